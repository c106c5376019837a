// plot.h — the loss curve picture written into output_dir at the end of training (SVG).
#ifndef LORAC_PLOT_H
#define LORAC_PLOT_H

// Training loss per step (x = step) and, if ne > 0, eval loss points. Atomic write.
int plot_loss_svg(const char *path, const double *x, const double *y, int n, const double *ex,
                  const double *ey, int ne, const char *title);

#endif

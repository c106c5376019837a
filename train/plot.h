// plot.h — dependency-free SVG line charts against the optimizer step: the loss curve picture
// written into output_dir at the end of training (loss.svg), and the charts of report.html.
#ifndef LORAC_PLOT_H
#define LORAC_PLOT_H

#include <stdio.h>

typedef struct plot_series {
    const double *x, *y;   // [n] points; non-finite y values are left out
    int n;
    const char *label;     // legend text
    const char *color;     // SVG colour, e.g. "#1f77b4"
    int dots;              // 1: one dot per point (e.g. evaluations), 0: a polyline
} plot_series;

// One chart (720 × 420) of the series on shared axes, written to f as an <svg> element.
// logy: a logarithmic y axis (non-positive values are left out).
void plot_svg(FILE *f, const char *title, const plot_series *s, int ns, int logy);

// Training loss per step (x = step) and, if ne > 0, eval loss points. Atomic write.
int plot_loss_svg(const char *path, const double *x, const double *y, int n, const double *ex,
                  const double *ey, int ne, const char *title);

#endif

// plot.c — a dependency-free SVG line chart of the loss curve (see plot.h).
#include "plot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

int plot_loss_svg(const char *path, const double *x, const double *y, int n, const double *ex,
                  const double *ey, int ne, const char *title) {
    const double W = 720, H = 420, L = 70, R = 20, T = 40, B = 50;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int i = 0; i < n; i++) {
        if (!isfinite(y[i])) continue;
        x0 = fmin(x0, x[i]), x1 = fmax(x1, x[i]), y0 = fmin(y0, y[i]), y1 = fmax(y1, y[i]);
    }
    for (int i = 0; i < ne; i++) {
        if (!isfinite(ey[i])) continue;
        x0 = fmin(x0, ex[i]), x1 = fmax(x1, ex[i]), y0 = fmin(y0, ey[i]), y1 = fmax(y1, ey[i]);
    }
    if (!(x0 <= x1)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
    if (x1 == x0) x1 = x0 + 1;
    if (y1 == y0) y1 = y0 + 1;
    double pad = 0.05 * (y1 - y0);
    y0 -= pad, y1 += pad;
    afile *af = afile_open(path);
    if (!af) return -1;
    FILE *f = af->fp;
#define PX(v) (L + ((v) - x0) / (x1 - x0) * (W - L - R))
#define PY(v) (H - B - ((v) - y0) / (y1 - y0) * (H - T - B))
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" font-family=\"sans-serif\" "
               "font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", W, H);
    fprintf(f, "<text x=\"%g\" y=\"24\" font-size=\"15\">%s</text>\n", L, title);
    for (int k = 0; k <= 4; k++) {
        double v = y0 + (y1 - y0) * k / 4, py = PY(v);
        fprintf(f, "<line x1=\"%g\" y1=\"%.1f\" x2=\"%g\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", L, py, W - R, py);
        fprintf(f, "<text x=\"%g\" y=\"%.1f\" text-anchor=\"end\">%.3g</text>\n", L - 6, py + 4, v);
        double u = x0 + (x1 - x0) * k / 4;
        fprintf(f, "<text x=\"%.1f\" y=\"%g\" text-anchor=\"middle\">%.0f</text>\n", PX(u), H - B + 18, u);
    }
    fprintf(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">optimizer step</text>\n", (L + W - R) / 2, H - 12);
    fprintf(f, "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"");
    for (int i = 0; i < n; i++)
        if (isfinite(y[i])) fprintf(f, "%.1f,%.1f ", PX(x[i]), PY(y[i]));
    fprintf(f, "\"/>\n");
    for (int i = 0; i < ne; i++)
        if (isfinite(ey[i]))
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"#d62728\"/>\n", PX(ex[i]), PY(ey[i]));
    fprintf(f, "<text x=\"%g\" y=\"24\" fill=\"#1f77b4\" text-anchor=\"end\">train loss</text>\n", W - R - 90);
    if (ne) fprintf(f, "<text x=\"%g\" y=\"24\" fill=\"#d62728\" text-anchor=\"end\">eval loss</text>\n", W - R);
    fprintf(f, "</svg>\n");
#undef PX
#undef PY
    return afile_commit(af);
}

// plot.c — dependency-free SVG line charts (see plot.h).
#include "plot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

// The plotted y of a value: itself, or log10 on a log axis (NAN when it cannot be shown).
static double yval(double v, int logy) {
    if (!isfinite(v)) return NAN;
    return logy ? (v > 0 ? log10(v) : NAN) : v;
}

void plot_svg(FILE *f, const char *title, const plot_series *s, int ns, int logy) {
    const double W = 720, H = 420, L = 70, R = 20, T = 40, B = 50;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int k = 0; k < ns; k++)
        for (int i = 0; i < s[k].n; i++) {
            double v = yval(s[k].y[i], logy);
            if (isnan(v)) continue;
            x0 = fmin(x0, s[k].x[i]), x1 = fmax(x1, s[k].x[i]), y0 = fmin(y0, v), y1 = fmax(y1, v);
        }
    if (!(x0 <= x1)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
    if (x1 == x0) x1 = x0 + 1;
    if (y1 == y0) y1 = y0 + 1;
    double pad = 0.05 * (y1 - y0);
    // no negative ticks below data that are all >= 0 (losses, norms, rates)
    y0 = !logy && y0 >= 0 && y0 - pad < 0 ? 0 : y0 - pad;
    y1 += pad;
#define PX(v) (L + ((v) - x0) / (x1 - x0) * (W - L - R))
#define PY(v) (H - B - ((v) - y0) / (y1 - y0) * (H - T - B))
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" font-family=\"sans-serif\" "
               "font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", W, H);
    fprintf(f, "<text x=\"%g\" y=\"24\" font-size=\"15\">%s</text>\n", L, title);
    for (int k = 0; k <= 4; k++) {
        double v = y0 + (y1 - y0) * k / 4, py = PY(v);
        fprintf(f, "<line x1=\"%g\" y1=\"%.1f\" x2=\"%g\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", L, py, W - R, py);
        fprintf(f, "<text x=\"%g\" y=\"%.1f\" text-anchor=\"end\">%.4g</text>\n", L - 6, py + 4, logy ? pow(10, v) : v);
        double u = x0 + (x1 - x0) * k / 4;
        fprintf(f, "<text x=\"%.1f\" y=\"%g\" text-anchor=\"middle\">%.0f</text>\n", PX(u), H - B + 18, u);
    }
    fprintf(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">optimizer step</text>\n", (L + W - R) / 2, H - 12);
    for (int k = 0; k < ns; k++) {
        const plot_series *p = &s[k];
        if (!p->dots) fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", p->color);
        for (int i = 0; i < p->n; i++) {
            double v = yval(p->y[i], logy);
            if (isnan(v)) continue;
            if (p->dots)
                fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"/>\n", PX(p->x[i]), PY(v), p->color);
            else
                fprintf(f, "%.1f,%.1f ", PX(p->x[i]), PY(v));
        }
        if (!p->dots) fprintf(f, "\"/>\n");
    }
    for (int k = 0; k < ns; k++)   // legend, right-aligned, the last series rightmost
        fprintf(f, "<text x=\"%g\" y=\"24\" fill=\"%s\" text-anchor=\"end\">%s</text>\n", W - R - 90 * (ns - 1 - k),
                s[k].color, s[k].label);
    fprintf(f, "</svg>\n");
#undef PX
#undef PY
}

int plot_loss_svg(const char *path, const double *x, const double *y, int n, const double *ex,
                  const double *ey, int ne, const char *title) {
    plot_series s[2] = {{x, y, n, "train loss", "#1f77b4", 0}, {ex, ey, ne, "eval loss", "#d62728", 1}};
    afile *af = afile_open(path);
    if (!af) return -1;
    plot_svg(af->fp, title, s, ne ? 2 : 1, 0);
    return afile_commit(af);
}

// prefetch.c — the background image loader (see prefetch.h): a worker pthread, two pixel
// buffers, one mutex and one condition variable. The worker takes a submitted batch, runs
// img_preprocess on each path in order into the batch's buffer, and marks it done (with the
// first error's message, since err_set is thread-local).
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "prefetch.h"
#include "util.h"

struct data_prefetch {
    int size, max_batch;
    img_norm norm;
    int64_t max_pixels;
    size_t per_image;        // 3·S·S floats
    float *buf[2];           // [max_batch, 3, S, S] each
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    // state under mu
    int quit;
    int pending;             // a batch was submitted and not yet waited for
    int queued;              // the worker has not taken it yet
    int done;                // the worker finished it
    int slot;                // buffer of the pending batch
    char **paths;            // [n] owned copies of the pending batch's paths
    int n;
    int failed;
    char err[1024];
};

static void *worker(void *arg) {
    data_prefetch *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && !p->queued) pthread_cond_wait(&p->cv, &p->mu);
        if (p->quit) break;
        p->queued = 0;
        int n = p->n, slot = p->slot;
        char **paths = p->paths;
        pthread_mutex_unlock(&p->mu);
        int failed = 0;
        char err[1024] = "";
        for (int i = 0; i < n && !failed; i++) {
            if (__atomic_load_n(&p->quit, __ATOMIC_RELAXED)) {   // shutting down: stop early
                failed = 1;
                snprintf(err, sizeof err, "prefetch: stopped");
                break;
            }
            float *dst = p->buf[slot] + (size_t)i * p->per_image;
            if (img_preprocess(paths[i], p->size, &p->norm, p->max_pixels, dst) != 0) {
                failed = 1;
                snprintf(err, sizeof err, "%s", err_get());
            }
        }
        pthread_mutex_lock(&p->mu);
        p->failed = failed;
        memcpy(p->err, err, sizeof err);
        p->done = 1;
        pthread_cond_broadcast(&p->cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

data_prefetch *data_prefetch_new(int size, const img_norm *norm, int64_t max_pixels, int max_batch) {
    if (size <= 0 || max_batch <= 0) {
        err_set("prefetch: expected image size > 0 and batch > 0, found %d and %d", size, max_batch);
        return NULL;
    }
    data_prefetch *p = xcalloc(1, sizeof *p);
    p->size = size;
    p->max_batch = max_batch;
    p->norm = norm ? *norm : img_norm_siglip();
    p->max_pixels = max_pixels;
    p->per_image = (size_t)3 * size * size;
    for (int k = 0; k < 2; k++) p->buf[k] = xmalloc(p->per_image * (size_t)max_batch * sizeof(float));
    p->slot = 1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (pthread_create(&p->thread, NULL, worker, p) != 0) {
        err_set("prefetch: cannot start the image loader thread");
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
        free(p->buf[0]);
        free(p->buf[1]);
        free(p);
        return NULL;
    }
    return p;
}

static void free_paths(data_prefetch *p) {
    for (int i = 0; i < p->n && p->paths; i++) free(p->paths[i]);
    free(p->paths);
    p->paths = NULL;
    p->n = 0;
}

int data_prefetch_submit(data_prefetch *p, const char *const *paths, int n) {
    if (n <= 0 || n > p->max_batch)
        return err_set("prefetch: expected 1..%d images per batch, found %d", p->max_batch, n);
    pthread_mutex_lock(&p->mu);
    if (p->pending) {
        pthread_mutex_unlock(&p->mu);
        return err_set("prefetch: a batch is already pending (call data_prefetch_wait first)");
    }
    free_paths(p);   // the previous batch's copies (the worker is idle: nothing pending)
    p->paths = xcalloc((size_t)n, sizeof *p->paths);
    for (int i = 0; i < n; i++) p->paths[i] = xstrdup(paths[i]);
    p->n = n;
    p->slot ^= 1;    // the other buffer than the one last returned by wait
    p->pending = p->queued = 1;
    p->done = p->failed = 0;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

int data_prefetch_wait(data_prefetch *p, const float **pixels) {
    pthread_mutex_lock(&p->mu);
    if (!p->pending) {
        pthread_mutex_unlock(&p->mu);
        return err_set("prefetch: no batch pending (call data_prefetch_submit first)");
    }
    while (!p->done) pthread_cond_wait(&p->cv, &p->mu);
    p->pending = 0;
    int n = p->n, failed = p->failed;
    char err[1024];
    memcpy(err, p->err, sizeof err);
    *pixels = p->buf[p->slot];
    pthread_mutex_unlock(&p->mu);
    if (failed) {
        *pixels = NULL;
        return err_set("%s", err);
    }
    return n;
}

void data_prefetch_free(data_prefetch *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    __atomic_store_n(&p->quit, 1, __ATOMIC_RELAXED);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free_paths(p);
    free(p->buf[0]);
    free(p->buf[1]);
    free(p);
}

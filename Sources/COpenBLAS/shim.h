#include <cblas.h>
#include <stddef.h>

// LAPACK from the same library: Debian's libopenblas exports the LAPACK symbols but installs no
// lapack.h, so the routines we use are declared here. Fortran convention: every argument by
// pointer, matrices column-major, and one hidden length per character argument at the end.
// dsyevr: selected eigenvalues/eigenvectors of a symmetric matrix (RWKV upgrade: truncated SVD).
void dsyevr_(const char *jobz, const char *range, const char *uplo, const int *n, double *a, const int *lda,
             const double *vl, const double *vu, const int *il, const int *iu, const double *abstol,
             int *m, double *w, double *z, const int *ldz, int *isuppz, double *work, const int *lwork,
             int *iwork, const int *liwork, int *info, size_t jobz_len, size_t range_len, size_t uplo_len);
// dposv: solves A·X = B for symmetric positive definite A by Cholesky (upgrade: least-squares fits).
void dposv_(const char *uplo, const int *n, const int *nrhs, double *a, const int *lda, double *b, const int *ldb,
            int *info, size_t uplo_len);

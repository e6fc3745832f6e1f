# Reference values of the area-level Fay-Herriot model for tests/test_smallarea.py.
#
#   Rscript r/fay_herriot_reference.R       (from the repository root; needs R >= 4 and metafor)
#
# Builds small deterministic area-level data sets (set.seed, Mersenne-Twister): an interior REML
# solution with two covariates, an intercept-only model on few areas, a boundary case whose
# restricted likelihood is maximal at sigma2_u = 0, and a shares-like case on [0, 1]. For each one
# it fits sigma2_u by REML twice, independently:
#   * from the formulas: the restricted log-likelihood
#       l_R(s2) = -1/2 [ (m - p) log 2 pi + sum log(s2 + psi) + log |X'V^-1 X| + r'V^-1 r ]
#     maximised over s2 >= 0 with optimize() (then the interior optimum is polished by Newton
#     steps on the analytic score), and
#   * with metafor::rma(yi = y, vi = psi, mods = X, method = "REML"), the random-effects
#     meta-regression, which is the same model (tau^2 = sigma2_u, constrained to >= 0) fitted by
#     another code, whose blup() gives the EBLUPs;
# (nlme::lme with the residual variance fixed to psi_d, lmeControl(sigma = 1), agrees with both
# for ML but not for REML: with a fixed sigma its restricted likelihood is not Harville's, so it
# is not used here.)
# then the GLS coefficients, EBLUPs gamma y + (1 - gamma) x'beta and the Prasad-Rao MSE
# g1 + g2 + 2 g3 (Datta & Lahiri 2000 for REML), and the ML fit (for the covariate selection).
# Writes the inputs and the reference results to tests/fixtures/r/smallarea/ with 17
# significant digits. CI does not need R: the tests read these files.
suppressMessages(library(metafor))
out_dir <- "tests/fixtures/r/smallarea"
dir.create(out_dir, recursive = TRUE, showWarnings = FALSE)
fmt <- function(x) ifelse(is.na(x), "NA", sprintf("%.17g", as.numeric(x)))

gls_parts <- function(s2, y, psi, X) {
  w <- 1 / (s2 + psi)
  A <- crossprod(X, X * w)
  beta <- solve(A, crossprod(X, w * y))
  r <- as.vector(y - X %*% beta)
  list(w = w, A = A, beta = as.vector(beta), r = r)
}
loglik <- function(s2, y, psi, X, method) {
  g <- gls_parts(s2, y, psi, X)
  m <- length(y); p <- ncol(X)
  quad <- sum(g$w * g$r^2)
  if (method == "ML") return(-0.5 * (m * log(2 * pi) + sum(log(s2 + psi)) + quad))
  -0.5 * ((m - p) * log(2 * pi) + sum(log(s2 + psi)) +
            as.numeric(determinant(g$A, logarithm = TRUE)$modulus) + quad)
}
score <- function(s2, y, psi, X, method) {
  g <- gls_parts(s2, y, psi, X)
  if (method == "ML") return(-0.5 * sum(g$w) + 0.5 * sum((g$w * g$r)^2))
  V_inv <- diag(g$w)
  P <- V_inv - V_inv %*% X %*% solve(g$A) %*% t(X) %*% V_inv
  -0.5 * sum(diag(P)) + 0.5 * sum((P %*% y)^2)
}
fit_formulas <- function(y, psi, X, method) {
  upper <- 10 * (var(y) + max(psi))
  opt <- optimize(function(s) -loglik(s, y, psi, X, method), c(0, upper), tol = 1e-14)
  s2 <- opt$minimum
  if (score(0, y, psi, X, method) <= 0 && loglik(0, y, psi, X, method) >= -opt$objective) {
    s2 <- 0
  } else {
    for (i in 1:50) {  # Newton on the score with a numerical derivative of the score
      h <- 1e-7 * (1 + s2)
      d <- (score(s2 + h, y, psi, X, method) - score(s2 - h, y, psi, X, method)) / (2 * h)
      step <- score(s2, y, psi, X, method) / d
      s2 <- max(s2 - step, 0)
      if (abs(step) < 1e-15 * (1 + s2)) break
    }
  }
  s2
}
predict_fh <- function(s2, y, psi, X) {
  g <- gls_parts(s2, y, psi, X)
  gamma <- s2 / (s2 + psi)
  eblup <- gamma * y + (1 - gamma) * as.vector(X %*% g$beta)
  A_inv <- solve(g$A)
  g1 <- gamma * psi
  g2 <- (1 - gamma)^2 * rowSums((X %*% A_inv) * X)
  g3 <- psi^2 / (s2 + psi)^3 * 2 / sum((s2 + psi)^-2)
  list(beta = g$beta, gamma = gamma, eblup = eblup, g1 = g1, g2 = g2, g3 = g3,
       mse = g1 + g2 + 2 * g3)
}
fit_metafor <- function(y, psi, X, method) {
  ctl <- list(threshold = 1e-14, maxiter = 10000, tau2.min = 0)
  f <- if (ncol(X) > 1) {
    rma(yi = y, vi = psi, mods = X[, -1, drop = FALSE], method = method, control = ctl)
  } else {
    rma(yi = y, vi = psi, method = method, control = ctl)
  }
  list(tau2 = f$tau2, beta = as.vector(f$beta), blup = blup(f)$pred)
}

params <- list()
areas <- list()
run_case <- function(name, y, psi, X) {
  colnames(X) <- c("intercept", if (ncol(X) > 1) paste0("x", seq_len(ncol(X) - 1)))
  inputs <- data.frame(case = name, area = seq_along(y), y = fmt(y), psi = fmt(psi))
  for (k in colnames(X)[-1]) inputs[[k]] <- fmt(X[, k])
  write.csv(inputs, file.path(out_dir, paste0("input_", name, ".csv")), row.names = FALSE)
  s2 <- fit_formulas(y, psi, X, "REML")
  s2_ml <- fit_formulas(y, psi, X, "ML")
  mf <- fit_metafor(y, psi, X, "REML")
  mf_ml <- fit_metafor(y, psi, X, "ML")
  pr <- predict_fh(s2, y, psi, X)
  params[[length(params) + 1]] <<- data.frame(
    case = name, parameter = c("sigma2_u", "sigma2_u_ml", "sigma2_u_metafor",
                               "sigma2_u_ml_metafor", "loglik_reml", "loglik_ml",
                               paste0("beta_", colnames(X)), paste0("metafor_beta_", colnames(X))),
    value = fmt(c(s2, s2_ml, mf$tau2, mf_ml$tau2, loglik(s2, y, psi, X, "REML"),
                  loglik(s2_ml, y, psi, X, "ML"), pr$beta, mf$beta)))
  areas[[length(areas) + 1]] <<- data.frame(
    case = name, area = seq_along(y), gamma = fmt(pr$gamma), eblup = fmt(pr$eblup),
    g1 = fmt(pr$g1), g2 = fmt(pr$g2), g3 = fmt(pr$g3), mse = fmt(pr$mse),
    eblup_metafor = fmt(mf$blup))
  cat(sprintf("%-10s REML s2 = %.12g  metafor %.12g | ML s2 = %.12g  metafor %.12g | max |eblup - blup| %.2g\n",
              name, s2, mf$tau2, s2_ml, mf_ml$tau2, max(abs(pr$eblup - mf$blup))))
}

set.seed(20260611)
m <- 40
X <- cbind(1, rnorm(m), rnorm(m))
psi <- runif(m, 0.05, 0.6)
y <- as.vector(X %*% c(3, 0.6, -0.2)) + rnorm(m, 0, 0.5) + rnorm(m, 0, sqrt(psi))
run_case("interior", y, psi, X)

m <- 12
X <- matrix(1, m, 1)
psi <- runif(m, 0.02, 0.2)
y <- 3.4 + rnorm(m, 0, 0.3) + rnorm(m, 0, sqrt(psi))
run_case("few_areas", y, psi, X)

m <- 25
X <- cbind(1, rnorm(m))
psi <- runif(m, 0.3, 1.2)
y <- as.vector(X %*% c(5, 0.4)) + rnorm(m, 0, sqrt(psi)) * 0.4  # less spread than psi implies
run_case("boundary", y, psi, X)

m <- 60
X <- cbind(1, rnorm(m), rbinom(m, 1, 0.4))
p <- plogis(as.vector(X %*% c(-0.6, 0.5, 0.7)) + rnorm(m, 0, 0.3))
n <- sample(15:70, m, replace = TRUE)
psi <- 1.6 * 0.22 / n
y <- pmin(pmax(p + rnorm(m, 0, sqrt(psi)), 0), 1)
run_case("shares", y, psi, X)

write.csv(do.call(rbind, params), file.path(out_dir, "parameters.csv"), row.names = FALSE)
write.csv(do.call(rbind, areas), file.path(out_dir, "areas.csv"), row.names = FALSE)
writeLines(c(paste("R", R.version$major, R.version$minor),
             paste("metafor", as.character(packageVersion("metafor")))),
           file.path(out_dir, "versions.txt"))

# Reference values from R `survey` for tests/test_models_methods_r.py: quasi-Poisson models, the
# dispersion of summary.svyglm, Wald tests of several terms (regTermTest), predicted marginal
# means (svypredmeans) and the ordinal model's sandwich with an exact Hessian.
#
#   Rscript r/models_methods_reference.R      (from the repository root; R >= 4, survey 4.1.1,
#                                              ordinal, jsonlite)
#
# Data: the api extracts committed by r/models_reference.R (tests/fixtures/r/models/*.csv).
# Writes tests/fixtures/r/models_methods/: coefficients.csv, vcov.csv (as the models fixtures),
# dispersion.csv, term_tests.csv, predmeans.csv and cases.json. 17 significant digits.
#
# * svyglm fits use glm.control(epsilon = 1e-14, maxit = 100) and one more IRLS pass from the
#   converged coefficients (as r/models_reference.R), so that R's estimates and sandwich are at
#   the root. R's default control (epsilon = 1e-8) stops earlier: for the quasi-Poisson cases the
#   default fits are written too ("<case>_glm_default") with their relative distance to the
#   converged fit, which the tests report (they compare with the converged fits).
# * dispersion: summary(fit)$dispersion, R's svyvar of the Pearson residuals (prior weights
#   w / mean(w)).
# * regTermTest(fit, ~terms) with R's default df (fit$df.residual; for svyolr degf - slopes).
# * svypredmeans: its code (survey 4.1.1) run on the converged refit with the group added (the
#   original refits the model with update() at the default control, ~1e-7 off for the
#   logistic); for the linear model svypredmeans itself is also written and must agree.
#   Intervals: confint(..., df = degf(design)).
# * ordinal ("exact"): ordinal::clm with the design weights (its own analytic Hessian, gradient
#   ~1e-12) gives the root and the bread; svyolr's influence functions (per-row scores times the
#   inverse Hessian) go through svyrecvar on svyolr's design (rows with a missing value dropped).
#   This is svyolr's variance with an exact Hessian in place of optim's finite difference.
suppressMessages({
  library(survey)
  library(ordinal)
  library(jsonlite)
})
options(survey.lonely.psu = "fail")
in_dir <- "tests/fixtures/r/models"
out_dir <- "tests/fixtures/r/models_methods"
dir.create(out_dir, recursive = TRUE, showWarnings = FALSE)
fmt <- function(x) ifelse(is.na(x), "NA", sprintf("%.17g", as.numeric(x)))
rd <- function(name) read.csv(file.path(in_dir, name), stringsAsFactors = FALSE,
                              colClasses = c(cds = "character", stype = "character"))
data <- list(apistrat = rd("apistrat.csv"), apiclus1 = rd("apiclus1.csv"),
             apiclus2 = rd("apiclus2.csv"))
des <- list(
  apistrat = svydesign(id = ~1, strata = ~stype, fpc = ~fpc, weights = ~pw, data = data$apistrat),
  apiclus1 = svydesign(id = ~dnum, fpc = ~fpc, weights = ~pw, data = data$apiclus1),
  apiclus2 = svydesign(id = ~dnum + snum, fpc = ~fpc1 + fpc2, weights = ~pw, data = data$apiclus2)
)
jk <- read.csv(file.path(in_dir, "apiclus1_jk1.csv"), stringsAsFactors = FALSE,
               colClasses = c(cds = "character", stype = "character"))
jk_cols <- grep("^rep_", names(jk), value = TRUE)
des$apiclus1_jk1 <- svrepdesign(data = jk, repweights = jk[, jk_cols], weights = ~pw,
                                type = "JK1", combined.weights = TRUE,
                                scale = (1 - 15 / 757) * 14 / 15)
ctl <- glm.control(epsilon = 1e-14, maxit = 100)
rename <- function(terms) {
  terms <- sub("^\\(Intercept\\)$", "Intercept", terms)
  terms <- sub("^stype([A-Z])$", "C(stype)[T.\\1]", terms)
  terms <- sub("^([0-9]+)\\|([0-9]+)$", "cut_\\1/\\2", terms)
  terms
}
fit_glm <- function(f, d, family, control = ctl, polish = TRUE) {
  fit <- do.call(svyglm, list(formula = as.formula(f), design = d, family = family,
                              control = control))
  if (!polish) return(fit)
  do.call(svyglm, list(formula = as.formula(f), design = d, family = family, control = control,
                       start = unname(coef(fit))))
}
coef_rows <- list()
vcov_rows <- list()
cases <- list()
add_coefs <- function(case, est, V, df, p, ci) {
  terms <- rename(names(est))
  coef_rows[[length(coef_rows) + 1]] <<- data.frame(
    case = case, term = terms, estimate = fmt(est), se = fmt(sqrt(diag(V))), df_resid = fmt(df),
    p_value = fmt(p), ci_low = fmt(ci[, 1]), ci_high = fmt(ci[, 2]), stringsAsFactors = FALSE)
  vcov_rows[[length(vcov_rows) + 1]] <<- data.frame(
    case = case, row_term = rep(terms, times = length(terms)),
    col_term = rep(terms, each = length(terms)), value = fmt(as.vector(V)),
    stringsAsFactors = FALSE)
}
add_glm <- function(case, fit) {
  sm <- summary(fit)$coefficients
  add_coefs(case, coef(fit), vcov(fit), fit$df.residual, sm[, 4], confint(fit))
}

# ------------------------------------------------------------------ GLM cases
f <- list(
  linear = c(patsy = "api00 ~ ell + meals + mobility + C(stype)",
             r = "api00 ~ ell + meals + mobility + stype"),
  logistic = c(patsy = "sch_wide ~ ell + meals + C(stype)", r = "sch_wide ~ ell + meals + stype"),
  quasipoisson = c(patsy = "meals ~ ell + mobility + C(stype)",
                   r = "meals ~ ell + mobility + stype")
)
families <- list(linear = gaussian(), logistic = quasibinomial(), quasipoisson = quasipoisson())
tests <- list(linear = list("~stype", "~ell+meals"), logistic = list("~stype", "~ell+meals"),
              quasipoisson = list("~stype", "~ell+mobility"))
disp_rows <- list()
test_rows <- list()
default_gap <- list()
for (kind in names(f)) for (nm in names(des)) {
  if (kind == "logistic" && nm == "apiclus1_jk1") next
  case <- paste0(kind, "_", nm)
  fit <- fit_glm(f[[kind]]["r"], des[[nm]], families[[kind]])
  stopifnot(fit$converged)
  add_glm(case, fit)
  disp <- summary(fit)$dispersion
  disp_rows[[length(disp_rows) + 1]] <- data.frame(case = case, dispersion = fmt(as.numeric(disp)[1]))
  for (tt in tests[[kind]]) {
    rt <- regTermTest(fit, as.formula(tt))
    test_rows[[length(test_rows) + 1]] <- data.frame(
      case = case, terms = gsub("~", "", tt), statistic = fmt(rt$Ftest), ndf = fmt(rt$df),
      ddf = fmt(rt$ddf), p_value = fmt(rt$p))
  }
  if (kind == "quasipoisson") {
    plain <- svyglm(as.formula(f[[kind]]["r"]), design = des[[nm]], family = quasipoisson())
    add_glm(paste0(case, "_glm_default"), plain)
    default_gap[[case]] <- list(
      estimate = max(abs(coef(plain) / coef(fit) - 1)),
      se = max(abs(SE(plain) / SE(fit) - 1)), iterations = plain$iter)
  }
  cases[[length(cases) + 1]] <- list(case = case, kind = kind, data = nm,
                                     formula_patsy = unname(f[[kind]]["patsy"]))
}

# ------------------------------------------------------------------ predicted marginal means
predmeans <- function(fit0, design, group) {
  # survey 4.1.1's svypredmeans, with the model refitted to convergence
  design <- eval(bquote(update(design, .groupfactor = factor(.(as.name(group))))))
  groups <- sort(unique(model.frame(design)$.groupfactor))
  ff <- update(formula(fit0), . ~ . + .groupfactor)
  model <- fit_glm(ff, design, fit0$family)
  w <- weights(design, "sampling")
  fits <- matrix(nrow = NROW(design), ncol = length(groups))
  dg <- matrix(nrow = length(coef(model)), ncol = length(groups))
  for (i in seq_along(groups)) {
    mf <- model.frame(design)
    mf$.groupfactor <- groups[i]
    eta <- predict.glm(model, newdata = mf, type = "link")
    fits[, i] <- model$family$linkinv(eta)
    mm <- model.matrix(terms(model), mf)
    dg[, i] <- t(colSums(w * model$family$mu.eta(eta) * mm)) / sum(w)
  }
  colnames(fits) <- as.character(groups)
  cond <- svymean(fits, design)
  attr(cond, "var") <- t(dg) %*% vcov(model) %*% dg + attr(cond, "var")
  cond
}
pm_rows <- list()
pm_formula <- list(linear = "api00 ~ ell + meals", logistic = "sch_wide ~ ell + meals",
                   quasipoisson = "meals ~ ell + mobility")
for (kind in names(pm_formula)) for (nm in c("apistrat", "apiclus1", "apiclus2", "apiclus1_jk1")) {
  if (kind == "logistic" && nm == "apiclus1_jk1") next
  fit0 <- fit_glm(pm_formula[[kind]], des[[nm]], families[[kind]])
  pm <- predmeans(fit0, des[[nm]], "stype")
  dfd <- degf(des[[nm]])
  ci <- confint(pm, df = dfd)
  pm_rows[[length(pm_rows) + 1]] <- data.frame(
    case = paste0(kind, "_", nm), formula = pm_formula[[kind]], level = names(coef(pm)),
    estimate = fmt(coef(pm)), se = fmt(SE(pm)), ci_low = fmt(ci[, 1]), ci_high = fmt(ci[, 2]),
    df = dfd)
  if (kind == "linear" && nm != "apiclus1_jk1") {  # the same with svypredmeans itself
    dd <- update(des[[nm]], stype = factor(stype))  # svypredmeans needs a factor group
    orig <- svypredmeans(svyglm(as.formula(pm_formula[[kind]]), dd), ~stype)
    stopifnot(max(abs(coef(orig)[names(coef(pm))] / coef(pm) - 1)) < 1e-10,
              max(abs(SE(orig)[names(coef(pm))] / SE(pm) - 1)) < 1e-10)
  }
}

# ------------------------------------------------------------------ ordinal, exact Hessian
f_ord <- c(patsy = "mealcat ~ avg_ed + mobility + C(stype)",
           r = "factor(mealcat) ~ avg_ed + mobility + stype")
ord_gap <- list()
for (nm in c("apiclus1", "apistrat")) {
  d <- des[[nm]]
  mf <- model.frame(as.formula(f_ord["r"]), model.frame(d))
  keep <- as.integer(rownames(mf))
  d2 <- d[keep, ]
  wt <- weights(d2)
  dat <- model.frame(d)[keep, ]
  dat$.w <- wt
  cf <- clm(as.formula(f_ord["r"]), data = dat, weights = .w,
            control = clm.control(gradTol = 1e-11, relTol = 1e-15, maxIter = 1000))
  stopifnot(max(abs(cf$gradient)) < 1e-9)
  q <- length(cf$alpha)
  pc <- length(cf$beta)
  order <- c(q + seq_len(pc), seq_len(q))  # clm: (alpha, beta) -> (beta, zeta)
  H <- cf$Hessian[order, order]
  x <- model.matrix(attr(mf, "terms"), mf)[, -1, drop = FALSE]
  y <- unclass(model.response(mf))
  zeta <- cf$alpha
  gam <- c(-Inf, zeta, Inf)
  eta <- drop(x %*% cf$beta)
  pr <- plogis(gam[y + 1] - eta) - plogis(gam[y] - eta)
  p1 <- dlogis(gam[y + 1] - eta)
  p2 <- dlogis(gam[y] - eta)
  Y1 <- outer(y, seq_len(q), "==")
  Y2 <- outer(y - 1, seq_len(q), "==")
  g1 <- x * (wt * (p1 - p2) / pr)
  g2 <- -(Y1 * p1 - Y2 * p2) * (wt / pr)
  inffun <- cbind(g1, g2) %*% solve(H)
  V <- svyrecvar(inffun, d2$cluster, d2$strata, d2$fpc, postStrata = d2$postStrata)
  est <- c(cf$beta, zeta)
  names(est) <- c(colnames(x), names(zeta))
  dimnames(V) <- list(names(est), names(est))
  add_coefs(paste0("ordinal_", nm, "_exact"), est, V, NA, rep(NA, length(est)),
            cbind(est - qnorm(0.975) * sqrt(diag(V)), est + qnorm(0.975) * sqrt(diag(V))))
  # regTermTest on svyolr with the exact covariance (R's own code: its vcov is object$var)
  olr <- svyolr(as.formula(f_ord["r"]), design = d, method = "logistic",
                control = list(reltol = 1e-15, maxit = 5000))
  ord_gap[[nm]] <- list(estimate = max(abs(coef(olr) / est[names(coef(olr))] - 1)),
                        se = max(abs(SE(olr) / sqrt(diag(V))[names(coef(olr))] - 1)))
  olr$coefficients <- cf$beta
  olr$zeta <- zeta
  olr$var <- V
  rt <- regTermTest(olr, ~stype)
  test_rows[[length(test_rows) + 1]] <- data.frame(
    case = paste0("ordinal_", nm, "_exact"), terms = "stype", statistic = fmt(rt$Ftest),
    ndf = fmt(rt$df), ddf = fmt(rt$ddf), p_value = fmt(rt$p))
  cases[[length(cases) + 1]] <- list(case = paste0("ordinal_", nm, "_exact"), kind = "ordinal",
                                     data = nm, formula_patsy = unname(f_ord["patsy"]))
}

write.csv(do.call(rbind, coef_rows), file.path(out_dir, "coefficients.csv"), row.names = FALSE)
write.csv(do.call(rbind, vcov_rows), file.path(out_dir, "vcov.csv"), row.names = FALSE)
write.csv(do.call(rbind, disp_rows), file.path(out_dir, "dispersion.csv"), row.names = FALSE)
write.csv(do.call(rbind, test_rows), file.path(out_dir, "term_tests.csv"), row.names = FALSE)
write.csv(do.call(rbind, pm_rows), file.path(out_dir, "predmeans.csv"), row.names = FALSE)
writeLines(toJSON(list(
  generator = "r/models_methods_reference.R",
  r_version = paste(R.version$major, R.version$minor, sep = "."),
  survey_version = as.character(packageVersion("survey")),
  ordinal_version = as.character(packageVersion("ordinal")),
  cases = cases,
  glm_default_control_gap = default_gap,
  svyolr_plain_gap = ord_gap), auto_unbox = TRUE, pretty = TRUE, digits = NA),
  file.path(out_dir, "cases.json"))
cat("wrote", length(cases), "cases to", out_dir, "\n")

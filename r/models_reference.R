# Reference values from R `survey` for tests/test_models_r.py: design-based regression on the
# classic `api` data (California Academic Performance Index, shipped with survey).
#
#   Rscript r/models_reference.R            (from the repository root; R >= 4, survey 4.1.1)
#
# Deterministic (no random numbers). Writes to tests/fixtures/r/models/:
#   apistrat.csv, apiclus1.csv, apiclus2.csv  the data used (patsy-safe column names, derived
#                                            columns mealcat 1..4 and sch_wide 0/1), and
#                                            apiclus1_jk1.csv (apiclus1 + JK1 replicate weights
#                                            rep_1..rep_15, combined = full-sample weight times
#                                            the replicate factor)
#   cases.json        one entry per case: data file, design columns, post-stratification, kind,
#                     patsy and R formulas, confidence-interval method, replicate settings
#   coefficients.csv  case, term (patsy names), estimate, se, df_resid, p_value, ci_low, ci_high
#   vcov.csv          case, row_term, col_term, value (long format)
# All numbers with 17 significant digits. CI does not need R: the tests read these files.
#
# Conventions
# * Terms use patsy names: "(Intercept)" -> "Intercept", "stypeH" -> "C(stype)[T.H]" (treatment
#   coding, reference = first level in sorted order, as both R and patsy do for "E" < "H" < "M"),
#   svyolr cut-points "1|2" -> "cut_1/2".
# * svyglm: linear = gaussian(), logistic = quasibinomial(); glm.control(epsilon = 1e-14) so the
#   IRLS fixed point is reached (glm's default 1e-8 leaves the logistic working weights ~1e-5 off).
#   df_resid = fit$df.residual = degf(design) + 1 - length(coef) (survey >= 4.0; for the replicate
#   design degf = rank of the replicate weights - 1). p_value from summary(fit) (t on df.residual).
#   ci from confint(fit): survey 4.1.1 confint.svyglm(method = "Wald", ddf = NULL) uses
#   ddf <- object$df.residual and a t quantile: est -/+ qt(0.975, df.residual) * se (coded as
#   confint.default at level 1 - 2 * pnorm(qt(0.025, ddf)), identical up to rounding ~1e-15).
# * svyolr (logit): coef() = slopes then the zeta cut-points, P(Y <= k) = plogis(zeta_k - eta).
#   svyolr has no confint method: confint() dispatches to confint.default, a NORMAL-quantile Wald
#   interval (est -/+ qnorm(0.975) * se); that is what ci_low/ci_high hold. summary.svyolr reports
#   t values but no p-values, and its object$df.residual is sum(weights) - p - q (a population
#   count, not a design df), so df_resid and p_value are NA for the ordinal cases.
#   svyolr's vcov is the sandwich whose bread is optim's finite-difference Hessian (of svyolr's
#   analytic gradient, step ndeps, on the log-spacing scale) mapped by the Jacobian. With the
#   defaults (ndeps = 1e-3) the SEs carry up to ~4e-4 relative numerical error (largest for
#   mobility, whose coefficient is small relative to its covariate's scale), and BFGS stops with
#   the weighted score at ~1e-5 (estimates ~5e-8 off the root). The "ordinal_<data>" cases are
#   therefore svyolr started at the Newton-polished root with maxit = 0 and ndeps = 1e-6 (see
#   fit_olr); "ordinal_<data>_svyolr_default" keep plain svyolr (reltol = 1e-15, default ndeps).
# * Rows with a missing value (apiclus1 avg_ed: 26 schools) are dropped by svyolr as
#   design[-nao, ]; svyrecvar keeps the original PSU counts (nPSU) and pads absent PSUs with zero
#   scores, i.e. domain (subset) semantics.
suppressMessages(library(survey))
options(survey.lonely.psu = "fail")
out_dir <- "tests/fixtures/r/models"
dir.create(out_dir, recursive = TRUE, showWarnings = FALSE)
fmt <- function(x) ifelse(is.na(x), "NA", sprintf("%.17g", as.numeric(x)))
write_data <- function(df, name) {
  df2 <- df
  for (k in names(df2)) if (is.numeric(df2[[k]])) df2[[k]] <- ifelse(is.na(df2[[k]]), NA, fmt(df2[[k]]))
  write.csv(df2, file.path(out_dir, name), row.names = FALSE, na = "", quote = TRUE)
}

data(api)
prep <- function(d, extra) {
  out <- data.frame(
    cds = as.character(d$cds), stype = as.character(d$stype), dnum = as.integer(d$dnum),
    snum = as.integer(d$snum), api00 = as.numeric(d$api00), ell = as.numeric(d$ell),
    meals = as.numeric(d$meals), mobility = as.numeric(d$mobility),
    avg_ed = as.numeric(d$avg.ed), sch_wide = as.integer(d$sch.wide == "Yes"),
    mealcat = as.integer(cut(d$meals, c(0, 25, 50, 75, 100), include.lowest = TRUE)),
    pw = as.numeric(d$pw), stringsAsFactors = FALSE)
  for (k in extra) out[[k]] <- as.numeric(d[[k]])
  out
}
datasets <- list(
  apistrat = prep(apistrat, "fpc"),
  apiclus1 = prep(apiclus1, "fpc"),
  apiclus2 = prep(apiclus2, c("fpc1", "fpc2"))
)
for (nm in names(datasets)) write_data(datasets[[nm]], paste0(nm, ".csv"))

# R designs; design_cols mirror them for evalterritoire.SurveyDesign (fpc = population counts)
nocol <- list(weight = NULL, strata = NULL, psu = NULL, fpc = NULL, psu2 = NULL, fpc2 = NULL)
des <- list()
des$apistrat <- svydesign(id = ~1, strata = ~stype, fpc = ~fpc, weights = ~pw,
                          data = datasets$apistrat)
des$apiclus1 <- svydesign(id = ~dnum, fpc = ~fpc, weights = ~pw, data = datasets$apiclus1)
# apiclus2: pw equals 1/prob implied by fpc1, fpc2 (checked below), so giving it is neutral
des$apiclus2 <- svydesign(id = ~dnum + snum, fpc = ~fpc1 + fpc2, weights = ~pw,
                          data = datasets$apiclus2)
implied <- 1 / svydesign(id = ~dnum + snum, fpc = ~fpc1 + fpc2, data = datasets$apiclus2)$prob
stopifnot(max(abs(implied - datasets$apiclus2$pw) / datasets$apiclus2$pw) < 1e-12)
design_cols <- list(
  apistrat = list(weight = "pw", strata = "stype", psu = NULL, fpc = "fpc", psu2 = NULL, fpc2 = NULL),
  apiclus1 = list(weight = "pw", strata = NULL, psu = "dnum", fpc = "fpc", psu2 = NULL, fpc2 = NULL),
  apiclus2 = list(weight = "pw", strata = NULL, psu = "dnum", fpc = "fpc1", psu2 = "snum",
                  fpc2 = "fpc2")
)
ps_pop <- data.frame(stype = c("E", "H", "M"), Freq = c(4421, 755, 1018))
des_ps <- postStratify(des$apiclus1, ~stype, ps_pop)
# JK1 replicate design from the one-stage cluster design (fpc enters through scale)
rep_des <- as.svrepdesign(des$apiclus1, type = "JK1")
rw <- weights(rep_des, "analysis")
R <- ncol(rw)
jk <- datasets$apiclus1
for (r in seq_len(R)) jk[[paste0("rep_", r)]] <- as.numeric(rw[, r])
write_data(jk, "apiclus1_jk1.csv")
stopifnot(max(abs(weights(rep_des, "sampling") - jk$pw)) < 1e-12)

rename <- function(terms) {
  terms <- sub("^\\(Intercept\\)$", "Intercept", terms)
  terms <- sub("^stype([A-Z])$", "C(stype)[T.\\1]", terms)
  terms <- sub("^([0-9]+)\\|([0-9]+)$", "cut_\\1/\\2", terms)
  terms
}
f_lin <- c(patsy = "api00 ~ ell + meals + mobility + C(stype)",
           r = "api00 ~ ell + meals + mobility + stype")
f_log <- c(patsy = "sch_wide ~ ell + meals + C(stype)", r = "sch_wide ~ ell + meals + stype")
f_ord <- c(patsy = "mealcat ~ avg_ed + mobility + C(stype)",
           r = "factor(mealcat) ~ avg_ed + mobility + stype")
ctl <- glm.control(epsilon = 1e-14, maxit = 100)
ci_glm <- paste("confint.svyglm (survey 4.1.1) default method='Wald', ddf=NULL -> df.residual:",
                "est -/+ qt(1 - (1-level)/2, df.residual) * se")
ci_olr <- paste("svyolr has no confint method: confint.default, normal quantile:",
                "est -/+ qnorm(1 - (1-level)/2) * se; no p-values or df (NA)")

cases <- list()
coef_rows <- list()
vcov_rows <- list()
add_case <- function(case, data, design, kind, f, fit, extra = list()) {
  if (kind == "ordinal") {
    est <- coef(fit)  # slopes then zeta
    V <- vcov(fit)[names(est), names(est)]
    se <- sqrt(diag(V))
    df <- NA
    p <- rep(NA, length(est))
    ci <- confint(fit)[names(est), , drop = FALSE]
    method <- ci_olr
    stopifnot(fit$convergence == 0)
  } else {
    est <- coef(fit)
    V <- vcov(fit)
    se <- sqrt(diag(V))
    df <- fit$df.residual
    sm <- summary(fit)$coefficients
    stopifnot(max(abs(sm[, 2] - se)) < 1e-12 * max(se))
    p <- sm[, 4]
    ci <- confint(fit)
    method <- ci_glm
    stopifnot(fit$converged)
  }
  terms <- rename(names(est))
  coef_rows[[length(coef_rows) + 1]] <<- data.frame(
    case = case, term = terms, estimate = fmt(est), se = fmt(se), df_resid = fmt(df),
    p_value = fmt(p), ci_low = fmt(ci[, 1]), ci_high = fmt(ci[, 2]), stringsAsFactors = FALSE)
  vcov_rows[[length(vcov_rows) + 1]] <<- data.frame(
    case = case, row_term = rep(terms, times = length(terms)),
    col_term = rep(terms, each = length(terms)), value = fmt(as.vector(V)),
    stringsAsFactors = FALSE)
  r_call <- switch(kind,
    linear = "svyglm(formula_r, design, family = gaussian(), control = glm.control(epsilon = 1e-14, maxit = 100))",
    logistic = "svyglm(formula_r, design, family = quasibinomial(), control = glm.control(epsilon = 1e-14, maxit = 100))",
    ordinal = if (grepl("_svyolr_default$", case))
      "svyolr(formula_r, design, method = 'logistic', control = list(reltol = 1e-15, maxit = 5000))"
    else
      "svyolr(formula_r, design, method = 'logistic', start = <Newton-polished root>, control = list(maxit = 0, ndeps = rep(1e-6, p + q)))")
  if (kind != "ordinal") r_call <- paste0(r_call, "; then refit with start = coef(fit)")
  cases[[length(cases) + 1]] <<- c(list(
    case = case, data = data, design = design, kind = kind,
    formula_patsy = unname(f["patsy"]), formula_r = unname(f["r"]), r_call = r_call,
    terms = terms, n = if (kind == "ordinal") length(fit$fitted.values[, 1]) else length(fit$y),
    ci_method = method, level = 0.95), extra)
}

fit_glm <- function(f, d, family) {
  fit <- svyglm(as.formula(f["r"]), design = d, family = family, control = ctl)
  # glm.fit returns the working weights of its last iteration, evaluated at the previous
  # coefficients (deviance convergence at 1e-14 still leaves them ~1e-7 away); one more IRLS
  # pass from the converged coefficients puts the sandwich's bread and scores at the root
  do.call(svyglm, list(formula = as.formula(f["r"]), design = d, family = family,
                       control = ctl, start = unname(coef(fit))))
}
# svyolr: its BFGS stops on the objective's relative change and leaves the weighted score at
# ~1e-5 (mobility's scale); we polish (beta, zeta) by Newton on the same weighted cumulative-logit
# score, then call svyolr from that root with maxit = 0 (no BFGS step) and ndeps = 1e-6 so that
# the Hessian optim differentiates from svyolr's analytic gradient is accurate (~1e-9). The
# "_svyolr_default" cases keep svyolr's defaults (ndeps = 1e-3: SEs off by up to ~4e-4).
olr_score <- function(par, x, y, wt, q) {
  pc <- ncol(x)
  beta <- par[seq_len(pc)]
  gamm <- c(-Inf, par[pc + 1:q], Inf)
  eta <- drop(x %*% beta)
  up <- gamm[y + 1] - eta
  lo <- gamm[y] - eta
  pr <- plogis(up) - plogis(lo)
  p1 <- dlogis(up)
  p2 <- dlogis(lo)
  g <- numeric(pc + q)
  g[seq_len(pc)] <- -colSums(x * (wt * (p1 - p2) / pr))
  for (k in seq_len(q)) g[pc + k] <- sum(wt * ((y == k) * p1 - (y == k + 1) * p2) / pr)
  g
}
fit_olr <- function(f, d, polish = TRUE) {
  fit <- svyolr(as.formula(f["r"]), design = d, method = "logistic",
                control = list(reltol = 1e-15, maxit = 5000))
  if (!polish) return(fit)
  mf <- model.frame(as.formula(f["r"]), model.frame(d))
  x <- model.matrix(attr(mf, "terms"), mf)[, -1, drop = FALSE]
  y <- unclass(model.response(mf))
  keep <- as.integer(rownames(mf))
  wt <- weights(d)[keep]
  q <- length(fit$zeta)
  par <- c(fit$coefficients, fit$zeta)
  for (it in 1:50) {
    g <- olr_score(par, x, y, wt, q)
    H <- sapply(seq_along(par), function(j) {
      h <- 1e-6 * max(1, abs(par[j]))
      e <- replace(numeric(length(par)), j, h)
      (olr_score(par + e, x, y, wt, q) - olr_score(par - e, x, y, wt, q)) / (2 * h)
    })
    step <- -solve((H + t(H)) / 2, g)
    par <- par + step
    if (max(abs(step)) < 1e-13 * max(1, abs(par))) break
  }
  pc <- ncol(x)
  zeta <- par[pc + 1:q]
  start <- c(par[seq_len(pc)], zeta[1], log(diff(zeta)))
  svyolr(as.formula(f["r"]), design = d, method = "logistic", start = start,
         control = list(maxit = 0, ndeps = rep(1e-6, length(start))))
}

for (nm in c("apistrat", "apiclus1", "apiclus2")) {
  add_case(paste0("linear_", nm), paste0(nm, ".csv"), design_cols[[nm]], "linear", f_lin,
           fit_glm(f_lin, des[[nm]], gaussian()))
}
add_case("linear_apiclus1_poststratified", "apiclus1.csv", design_cols$apiclus1, "linear", f_lin,
         fit_glm(f_lin, des_ps, gaussian()),
         list(poststratify = list(stype = list(E = 4421, H = 755, M = 1018))))
for (nm in c("apistrat", "apiclus2")) {
  add_case(paste0("logistic_", nm), paste0(nm, ".csv"), design_cols[[nm]], "logistic", f_log,
           fit_glm(f_log, des[[nm]], quasibinomial()))
}
for (nm in c("apiclus1", "apistrat")) {
  add_case(paste0("ordinal_", nm), paste0(nm, ".csv"), design_cols[[nm]], "ordinal", f_ord,
           fit_olr(f_ord, des[[nm]]))
  add_case(paste0("ordinal_", nm, "_svyolr_default"), paste0(nm, ".csv"), design_cols[[nm]],
           "ordinal", f_ord, fit_olr(f_ord, des[[nm]], polish = FALSE))
}
rep_fit <- svyglm(as.formula(f_lin["r"]), design = rep_des, family = gaussian(), control = ctl)
add_case("linear_apiclus1_jk1", "apiclus1_jk1.csv", list(weight = "pw"), "linear", f_lin, rep_fit,
         list(replicate = list(type = "JK1", weight = "pw",
                               replicate_weights = paste0("rep_", seq_len(R)),
                               combined_weights = TRUE, scale = rep_des$scale,
                               rscales = as.numeric(rep_des$rscales), mse = rep_des$mse,
                               degf = degf(rep_des),
                               note = "as.svrepdesign(svydesign(id=~dnum, fpc=~fpc, weights=~pw, data=apiclus1), type='JK1'); scale = (1 - n/N) (n-1)/n with n = 15 PSUs, N = 757")))

write.csv(do.call(rbind, coef_rows), file.path(out_dir, "coefficients.csv"), row.names = FALSE)
write.csv(do.call(rbind, vcov_rows), file.path(out_dir, "vcov.csv"), row.names = FALSE)
# null design entries as JSON null
for (i in seq_along(cases)) {
  d <- cases[[i]]$design
  full <- lapply(names(nocol), function(k) if (is.null(d[[k]])) NA else d[[k]])
  names(full) <- names(nocol)
  cases[[i]]$design <- full
}
meta <- list(
  generator = "r/models_reference.R",
  r_version = paste(R.version$major, R.version$minor, sep = "."),
  survey_version = as.character(packageVersion("survey")),
  cases = cases)
writeLines(jsonlite::toJSON(meta, auto_unbox = TRUE, pretty = TRUE, digits = NA, na = "null",
                            null = "null"),
           file.path(out_dir, "cases.json"))
cat("R", R.version$major, R.version$minor, "survey", as.character(packageVersion("survey")),
    ":", length(cases), "cases written to", out_dir, "\n")

# Reference values from R `survey` for tests/test_methods_r.py: the statistics beyond means.
#
#   Rscript r/methods_reference.R          (from the repository root; R >= 4, survey 4.1.1)
#
# Quantiles (svyquantile, qrule "math" and "school", Woodruff "mean" intervals), contrasts of
# domain means with their covariance (svytotal + svycontrast on Taylor designs, svyby(covmat =
# TRUE) / return.replicates on replicate designs), each domain against the whole sample,
# design t-tests (svyttest), Rao-Scott tests (svychisq, statistic "F"), Cronbach's alpha
# (svycralpha, with a delta-method SE from vcov(svyvar)), PPS designs (pps = "brewer",
# pps = HR(sum(p^2)/n)), calibration on a continuous auxiliary with linear, bounded linear,
# bounded raking and logit distances (calibrate), and replicate weights created from designs
# (as.svrepdesign JK1, JKn, BRR and Fay with a given Hadamard matrix; R's subbootstrap weights
# are written for the estimators, the draws being random).
#
# Data: the committed data sets of r/survey_reference.R (strat.csv, twostage.csv), completed
# with a few derived columns (written again here), R's election_pps, and a stratified PPS and a
# paired (BRR) version of strat. All numbers with 17 significant digits; the tests read
# tests/fixtures/r/methods/ and need no R.
#
# Conventions (R's answer where it is defined):
# * domains are subset() designs (svyby semantics); df = degf() of the domain after dropping
#   the rows where the variable is missing (what svyquantile, svyglm and svyvar use). For
#   contrasts R has no df (confint defaults to the normal): the df written is degf() of the
#   union of the domains involved (valid rows), the tests' convention; for a domain against the
#   whole, the domain's.
# * Brewer PPS designs: R's subset() of a survey.design2 drops the other rows and pads the
#   stratum with zero totals that take the first remaining PSU's (1 - pi) (order dependent), so
#   domain values on the Brewer design are computed on the whole design (svytotal + svycontrast,
#   the ratio form), which is the evalterritoire convention; quantiles there are national only.
# * svychisq on subsets of calibrated designs uses the whole design's df (its subsets keep all
#   rows); the reference p-value is recomputed with the domain's df (d0 and F are R's).
suppressMessages({
  library(survey)
  library(jsonlite)
})
options(survey.lonely.psu = "fail")
out_dir <- "tests/fixtures/r/methods"
in_dir <- "tests/fixtures/r/survey"
dir.create(out_dir, recursive = TRUE, showWarnings = FALSE)
fmt <- function(x) {
  x <- suppressWarnings(as.numeric(x))
  ifelse(is.na(x), "NA", sprintf("%.17g", x))
}
write_data <- function(df, name) {
  df2 <- df
  for (k in names(df2)) if (is.numeric(df2[[k]])) df2[[k]] <- ifelse(is.na(df2[[k]]), NA, fmt(df2[[k]]))
  write.csv(df2, file.path(out_dir, name), row.names = FALSE, na = "", quote = TRUE)
}
rows <- list()
emit <- function(case, what, domain, variable, key, est, se = NA, lo = NA, hi = NA, df = NA,
                 stat = NA, ndf = NA, ddf = NA, p = NA) {
  rows[[length(rows) + 1]] <<- data.frame(
    case = case, what = what, domain = as.character(domain), variable = variable,
    key = as.character(key), estimate = fmt(est), se = fmt(se), ci_low = fmt(lo),
    ci_high = fmt(hi), df = fmt(df), statistic = fmt(stat), ndf = fmt(ndf), ddf = fmt(ddf),
    p_value = fmt(p), stringsAsFactors = FALSE)
}
rd <- function(name) read.csv(file.path(in_dir, name), na.strings = c("", "NA"),
                              stringsAsFactors = FALSE)

# ------------------------------------------------------------------ data
strat <- rd("strat.csv")
set.seed(20260719)
strat$z <- round(strat$y2 * 0.6 + rnorm(nrow(strat), 2, 1), 4)  # a third item for alpha
strat$cnt <- rpois(nrow(strat), 3 + as.integer(factor(strat$h)))  # a count
strat$cnt[sample(nrow(strat), 6)] <- NA
write_data(strat, "strat.csv")
two <- rd("twostage.csv")
set.seed(7071)
two$g2 <- sample(c("a", "b"), nrow(two), replace = TRUE)
two$y_b <- round(two$y * 0.5 + rnorm(nrow(two), 0, 6), 3)
two$y_c <- round(two$y * 0.3 + rnorm(nrow(two), 10, 5), 3)
write_data(two, "twostage.csv")
# stratified PPS: pi of a PSU = min(0.9, n_h * size / (2 * stratum size)), size = its rows
spps <- strat
size <- ave(rep(1, nrow(spps)), spps$psu, FUN = length)
nh <- ave(as.numeric(factor(spps$psu)), spps$h, FUN = function(v) length(unique(v)))
tot <- ave(rep(1, nrow(spps)), spps$h, FUN = length)
spps$ppi <- pmin(0.9, nh * size / (2 * tot))
write_data(spps, "strat_pps.csv")
data(election)
elec <- data.frame(County = as.character(election_pps$County), Bush = election_pps$Bush,
                   Kerry = election_pps$Kerry, votes = election_pps$votes, p = election_pps$p,
                   stringsAsFactors = FALSE)
elec$dom <- ifelse(elec$County > "M", "late", "early")
elec$share <- elec$Bush / elec$votes
write_data(elec, "election_pps.csv")
# paired PSUs for BRR/Fay: strata s1-s3 in pairs; s4 (6 PSUs -> 3 pairs, R's large = "split")
brr <- strat
brr$pair <- ifelse(brr$h == "s4", brr$psu,
                   paste0(brr$h, "_", as.integer(factor(brr$psu)) %% 2))
write_data(brr, "brr.csv")

# ------------------------------------------------------------------ designs
pop <- c(`(Intercept)` = 600, agejeune = 230, agesenior = 200, x = 3300)
base_fpc <- svydesign(ids = ~psu, strata = ~h, fpc = ~N, weights = ~w, data = strat)
taylor <- list(
  strat_fpc = base_fpc,
  twostage = svydesign(ids = ~psu + ssu, strata = ~h, fpc = ~fpc1 + fpc2, weights = ~w,
                       data = two),
  rake = calibrate(base_fpc, ~age + sexe,
                   population = c(`(Intercept)` = 1100, agejeune = 310, agesenior = 270,
                                  sexeH = 530), calfun = "raking", epsilon = 1e-12, maxit = 200),
  greg_x = calibrate(base_fpc, ~age + x, pop),
  logit_x = calibrate(base_fpc, ~age + x, pop, calfun = "logit", bounds = c(0.6, 1.6),
                      epsilon = 1e-12, maxit = 200),
  brewer = svydesign(ids = ~psu, strata = ~h, fpc = ~ppi, data = spps, pps = "brewer"),
  election_brewer = svydesign(ids = ~1, fpc = ~p, data = elec, pps = "brewer"),
  election_hr = svydesign(ids = ~1, fpc = ~p, data = elec, pps = HR(sum(elec$p^2) / 40))
)
calib_extra <- list(
  linear_bounded = calibrate(base_fpc, ~age + x, pop, calfun = "linear", bounds = c(0.8, 1.45),
                             epsilon = 1e-12, maxit = 200),
  raking_bounded = calibrate(base_fpc, ~age + x, pop, calfun = "raking", bounds = c(0.75, 1.5),
                             epsilon = 1e-12, maxit = 200),
  raking_x = calibrate(base_fpc, ~age + x, pop, calfun = "raking", epsilon = 1e-12, maxit = 200),
  # weights summing to ~n: every population / sample ratio > 20, R rescales before the bounds
  rescaled = calibrate(svydesign(ids = ~psu, strata = ~h, fpc = ~N, weights = ~I(w / 30),
                                 data = strat), ~age + x, pop, calfun = "logit",
                       bounds = c(0.5, 2), epsilon = 1e-12, maxit = 200)
)
strat_wr <- svydesign(ids = ~psu, strata = ~h, weights = ~w, data = strat)
H8 <- rbind(c(1, 1), c(1, 0))
for (i in 1:2) H8 <- rbind(cbind(H8, H8), cbind(H8, 1 - H8))  # Sylvester, 0/1, order 8
write.table(H8, file.path(out_dir, "hadamard8.csv"), sep = ",", row.names = FALSE,
            col.names = FALSE)
brr_des <- svydesign(ids = ~pair, strata = ~h, weights = ~w, data = brr)
set.seed(99)
boot <- as.svrepdesign(strat_wr, type = "subbootstrap", replicates = 60)
rw <- weights(boot, "analysis")
colnames(rw) <- paste0("rep", seq_len(ncol(rw)))
write_data(as.data.frame(rw), "repweights_subbootstrap.csv")
replicate <- list(
  jkn = as.svrepdesign(strat_wr, type = "JKn"),
  jkn_fpc = as.svrepdesign(base_fpc, type = "JKn"),
  jk1 = as.svrepdesign(svydesign(ids = ~psu, weights = ~w, data = strat), type = "JK1"),
  jk1_fpc = as.svrepdesign(svydesign(ids = ~psu, fpc = ~I(rep(40, nrow(strat))), weights = ~w,
                                     data = strat), type = "JK1"),
  brr = as.svrepdesign(brr_des, type = "BRR", hadamard.matrix = H8),
  fay = as.svrepdesign(brr_des, type = "Fay", fay.rho = 0.3, hadamard.matrix = H8),
  subbootstrap = svrepdesign(data = strat, repweights = rw, weights = ~w, type = "bootstrap",
                             combined.weights = TRUE, scale = boot$scale, rscales = boot$rscales)
)
meta <- lapply(replicate, function(r) list(
  scale = r$scale, rscales = sort(as.numeric(r$rscales)), degf = degf(r), mse = r$mse,
  n_replicates = length(r$rscales)))

# ------------------------------------------------------------------ what each data set tests
spec_strat <- list(q = c("y1", "cnt"), v = "y1", t = c("y1", "sexe"), chi = c("cat", "age"),
                   alpha = c("y1", "y2", "z"), m = c("y1", "y2"))
spec_two <- list(q = "y", v = "y", t = c("y", "g2"), chi = c("cat2", "g2"),
                 alpha = c("y", "y_b", "y_c"), m = "y")
spec_elec <- list(q = "Bush", v = "share", t = c("share", "dom"), chi = NULL,
                  alpha = c("Bush", "Kerry", "votes"), m = c("Bush", "share"))
spec_of <- function(case) {
  if (case == "twostage") spec_two else if (grepl("^election", case)) spec_elec else spec_strat
}
data_of <- function(case) {
  if (case == "twostage") two else if (grepl("^election", case)) elec
  else if (case == "brewer") spps else if (case %in% c("brr", "fay")) brr else strat
}
sub_of <- function(des, d) if (d == "") des else subset(des, dom == d)
valid <- function(des, v) eval(bquote(subset(des, !is.na(.(as.name(v))))))
f1 <- function(v) as.formula(paste0("~", v))

# ------------------------------------------------------------------ quantiles
quantile_rows <- function(case, des, data, spec, domains) {
  for (v in spec$q) for (d in domains) {
    sub <- sub_of(des, d)
    for (rule in c("math", "school")) {
      if (rule == "school" && d != "") next
      q <- svyquantile(f1(v), sub, c(0.25, 0.5, 0.9), na.rm = TRUE, qrule = rule)[[1]]
      for (k in seq_len(nrow(q))) {
        emit(case, paste0("quantile_", rule), d, v, c(0.25, 0.5, 0.9)[k], q[k, 1], q[k, 4],
             q[k, 2], q[k, 3], degf(valid(sub, v)))
      }
    }
  }
}

# ------------------------------------------------------------------ contrasts and comparisons
expr <- function(txt) parse(text = txt)[[1]]
contrast_taylor <- function(case, des, data, v) {
  doms <- sort(unique(data$dom))
  ok <- !is.na(data[[v]])
  y0 <- ifelse(ok, data[[v]], 0)
  cols <- list(num_all = y0, den_all = as.numeric(ok))
  for (i in seq_along(doms)) {
    cols[[paste0("num_", i)]] <- y0 * (data$dom == doms[i])
    cols[[paste0("den_", i)]] <- as.numeric(ok & data$dom == doms[i])
  }
  des2 <- do.call(update, c(list(des), cols))
  tot <- svytotal(as.formula(paste("~", paste(names(cols), collapse = "+"))), des2)
  means <- svycontrast(tot, setNames(lapply(seq_along(doms), function(i)
    expr(sprintf("num_%d/den_%d", i, i))), doms))
  V <- vcov(means)
  for (i in seq_along(doms)) {
    emit(case, "domain_mean", doms[i], v, "", coef(means)[i], sqrt(V[i, i]))
    for (j in seq_along(doms)) emit(case, "covariance", doms[i], v, doms[j], V[i, j])
    cmp <- svycontrast(tot, list(d = expr(sprintf("num_%d/den_%d - num_all/den_all", i, i))))
    dfd <- degf(valid(subset(des, dom == doms[i]), v))
    ci <- confint(cmp, df = dfd)
    emit(case, "versus_whole", doms[i], v, "", coef(cmp), SE(cmp), ci[1], ci[2], dfd)
  }
  pairs <- list(c(2, 3), c(1, length(doms)))
  for (pr in pairs) {
    if (max(pr) > length(doms) || pr[1] == pr[2]) next
    cc <- svycontrast(tot, list(d = expr(sprintf("num_%d/den_%d - num_%d/den_%d",
                                                  pr[1], pr[1], pr[2], pr[2]))))
    dfc <- degf(valid(subset(des, dom %in% doms[pr]), v))
    ci <- confint(cc, df = dfc)
    emit(case, "contrast", paste(doms[pr], collapse = "-"), v, "", coef(cc), SE(cc), ci[1],
         ci[2], dfc)
  }
}
contrast_replicate <- function(case, des, data, v) {
  # svycontrast() of an svyby object fails when it also holds its replicates (survey 4.1.1):
  # one svyby for the covariance and the contrasts, one for the replicates
  by <- svyby(f1(v), ~dom, des, svymean, na.rm = TRUE, covmat = TRUE)
  doms <- as.character(by$dom)
  V <- vcov(by)
  est <- coef(by)
  reps <- attr(svyby(f1(v), ~dom, des, svymean, na.rm = TRUE, return.replicates = TRUE),
               "replicates")
  nat <- svymean(f1(v), des, na.rm = TRUE, return.replicates = TRUE)
  nat_m <- as.numeric(nat$mean)[1]
  for (i in seq_along(doms)) {
    emit(case, "domain_mean", doms[i], v, "", est[i], sqrt(V[i, i]))
    for (j in seq_along(doms)) emit(case, "covariance", doms[i], v, doms[j], V[i, j])
    diff <- reps[, i] - nat$replicates
    var <- svrVar(diff, des$scale, des$rscales, mse = des$mse, coef = est[i] - nat_m)
    dfd <- degf(valid(subset(des, dom == doms[i]), v))
    se <- sqrt(as.numeric(var))
    q <- qt(0.975, dfd)
    d <- est[i] - nat_m
    emit(case, "versus_whole", doms[i], v, "", d, se, d - q * se, d + q * se, dfd)
  }
  for (pr in list(c(2, 3), c(1, length(doms)))) {
    L <- numeric(length(doms))
    L[pr] <- c(1, -1)
    cc <- svycontrast(by, L)
    dfc <- degf(valid(subset(des, dom %in% doms[pr]), v))
    ci <- confint(cc, df = dfc)
    emit(case, "contrast", paste(doms[pr], collapse = "-"), v, "", coef(cc), SE(cc), ci[1],
         ci[2], dfc)
  }
}

# ------------------------------------------------------------------ tests and alpha
test_rows <- function(case, des, data, spec, domains, calibrated) {
  v <- spec$t[1]
  g <- spec$t[2]
  for (d in domains) {
    sub <- sub_of(des, d)
    if (g != "dom" || d == "") {
      tt <- svyttest(as.formula(paste(v, "~", g)), sub)
      emit(case, "ttest", d, v, g, tt$estimate, tt$estimate / tt$statistic, tt$conf.int[1],
           tt$conf.int[2], tt$parameter, tt$statistic, p = tt$p.value)
    }
    t0 <- svyttest(as.formula(paste(v, "~ 0")), sub, na.rm = TRUE)
    emit(case, "ttest_one", d, v, "", t0$estimate, t0$estimate / t0$statistic, t0$conf.int[1],
         t0$conf.int[2], t0$parameter, t0$statistic, p = t0$p.value)
    if (!is.null(spec$chi)) {
      x <- svychisq(as.formula(paste("~", spec$chi[1], "+", spec$chi[2])), sub)
      ndf <- x$parameter[[1]]
      ddf <- x$parameter[[2]]
      p <- x$p.value
      if (calibrated && d != "") {  # R's subset keeps every row: recompute with the domain's df
        ddf <- ndf * degf(sub)
        p <- pf(x$statistic, ndf, ddf, lower.tail = FALSE)
      }
      if (is.finite(x$statistic)) {
        emit(case, "chisq", d, spec$chi[1], spec$chi[2], NA, stat = x$statistic, ndf = ndf,
             ddf = ddf, p = p)
      }
    }
    alpha_row(case, sub, d, spec$alpha)
  }
}
alpha_row <- function(case, des, d, items) {
  k <- length(items)
  a <- svycralpha(as.formula(paste("~", paste(items, collapse = "+"))), des, na.rm = TRUE)
  des2 <- eval(bquote(update(des, tot__ = .(parse(text = paste(items, collapse = "+"))[[1]]))))
  v <- svyvar(as.formula(paste("~", paste(c(items, "tot__"), collapse = "+"))), des2,
              na.rm = TRUE)
  cv <- as.matrix(coef(v))
  if (is.null(dim(cv)) || length(cv) != (k + 1)^2) cv <- matrix(coef(v), k + 1)
  V <- attr(v, "var")
  si <- sum(diag(cv)[1:k])
  st <- cv[k + 1, k + 1]
  gr <- numeric((k + 1)^2)
  gr[(0:(k - 1)) * (k + 1) + 1:k] <- -k / (k - 1) / st
  gr[(k + 1)^2] <- k / (k - 1) * si / st^2
  se <- sqrt(drop(t(gr) %*% V %*% gr))
  dfd <- degf(eval(bquote(subset(des, .(parse(text = paste0("!is.na(", items, ")",
                                                          collapse = " & "))[[1]])))))
  q <- qt(0.975, dfd)
  emit(case, "alpha", d, paste(items, collapse = "+"), "", a, se, a - q * se, a + q * se, dfd)
}
mean_rows <- function(case, des, data, spec, domains) {
  for (v in spec$m) for (d in domains) {
    sub <- sub_of(des, d)
    m <- svymean(f1(v), sub, na.rm = TRUE)
    t <- svytotal(f1(v), sub, na.rm = TRUE)
    emit(case, "mean", d, v, "", coef(m), SE(m), df = degf(sub))
    emit(case, "total", d, v, "", coef(t), SE(t), df = degf(sub))
  }
}

# ------------------------------------------------------------------ run
for (case in names(taylor)) {
  des <- taylor[[case]]
  data <- data_of(case)
  spec <- spec_of(case)
  domains <- c("", sort(unique(data$dom)))
  brewer <- grepl("brewer", case)
  quantile_rows(case, des, data, spec, if (brewer) "" else domains)
  contrast_taylor(case, des, data, spec$v)
  test_rows(case, des, data, spec, if (brewer) "" else domains,
            calibrated = case %in% c("rake", "greg_x", "logit_x"))
  mean_rows(case, des, data, spec, if (brewer) "" else domains)
}
for (case in names(calib_extra)) mean_rows(case, calib_extra[[case]], strat, spec_strat,
                                           c("", sort(unique(strat$dom))))
for (case in names(replicate)) {
  des <- replicate[[case]]
  data <- data_of(case)
  domains <- c("", sort(unique(data$dom)))
  quantile_rows(case, des, data, spec_strat, domains)
  contrast_replicate(case, des, data, spec_strat$v)
  test_rows(case, des, data, spec_strat, domains, calibrated = FALSE)
  mean_rows(case, des, data, spec_strat, domains)
}

# calibration weights (g = new / old) of every calibrated design
g <- data.frame(
  rake = weights(taylor$rake) / weights(base_fpc),
  greg_x = weights(taylor$greg_x) / weights(base_fpc),
  logit_x = weights(taylor$logit_x) / weights(base_fpc),
  linear_bounded = weights(calib_extra$linear_bounded) / weights(base_fpc),
  raking_bounded = weights(calib_extra$raking_bounded) / weights(base_fpc),
  raking_x = weights(calib_extra$raking_x) / weights(base_fpc),
  rescaled = weights(calib_extra$rescaled) / (strat$w / 30))
write_data(g, "calibration_g.csv")
writeLines(toJSON(list(generator = "r/methods_reference.R",
                       r_version = paste(R.version$major, R.version$minor, sep = "."),
                       survey_version = as.character(packageVersion("survey")),
                       replicate = meta, calibration_population = as.list(pop)),
                  auto_unbox = TRUE, pretty = TRUE, digits = NA),
           file.path(out_dir, "meta.json"))

res <- do.call(rbind, rows)
write.csv(res, file.path(out_dir, "results.csv"), row.names = FALSE)
cat("wrote", nrow(res), "reference rows to", out_dir, "\n")

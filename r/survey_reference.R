# Reference values from R `survey` for tests/test_estimates.py and tests/test_design.py.
#
#   Rscript r/survey_reference.R            (from the repository root; needs R >= 4 and survey)
#
# Builds small deterministic data sets (set.seed, Mersenne-Twister) covering stratified one-stage
# clusters with fpc, two-stage clusters with fpc, weights only, calibration (postStratify,
# calibrate raking, calibrate linear), weight trimming (trimWeights, strict or not), replicate
# weights (JK1, JKn, bootstrap, BRR, Fay; also JK1 and bootstrap with R's default scale),
# lonely-PSU rules with domains, domains with missing values, domains crossing two factors
# (svyby), proportions with logit, Korn-Graubard ("beta") and Wald intervals (t with the domain's
# df, or normal), ratios and totals. Writes the data and the reference results to
# tests/fixtures/r/survey/ with 17 significant digits. CI does not need R: the tests read these
# files.
suppressMessages(library(survey))
options(survey.lonely.psu = "fail")
out_dir <- "tests/fixtures/r/survey"
dir.create(out_dir, recursive = TRUE, showWarnings = FALSE)
fmt <- function(x) {
  x <- as.numeric(x)
  ifelse(is.na(x), "NA", sprintf("%.17g", x))
}
write_data <- function(df, name) {
  df2 <- df
  for (k in names(df2)) if (is.numeric(df2[[k]])) df2[[k]] <- fmt(df2[[k]])
  write.csv(df2, file.path(out_dir, name), row.names = FALSE, na = "", quote = TRUE)
}
rows <- list()
emit <- function(case, domain, variable, level, est, se, lo = NA, hi = NA, df = NA, deff = NA) {
  rows[[length(rows) + 1]] <<- data.frame(
    case = case, domain = as.character(domain), variable = variable, level = as.character(level),
    estimate = fmt(est), se = fmt(se), ci_low = fmt(lo), ci_high = fmt(hi),
    df = fmt(df), deff = fmt(deff), stringsAsFactors = FALSE)
}

# ------------------------------------------------------------------ data set 1: stratified clusters
set.seed(20261122)
H <- 4
psu_per <- c(3, 4, 5, 6)
strat <- do.call(rbind, lapply(seq_len(H), function(h) {
  do.call(rbind, lapply(seq_len(psu_per[h]), function(a) {
    m <- sample(5:12, 1)
    data.frame(h = paste0("s", h), psu = paste0("p", h, "_", a), N = psu_per[h] * 4 + h,
               stringsAsFactors = FALSE)[rep(1, m), ]
  }))
}))
n <- nrow(strat)
strat$w <- round(runif(n, 1, 6), 3)
strat$y1 <- round(rnorm(n, 3, 1) + as.integer(factor(strat$h)) / 3, 4)
strat$y1[sample(n, 12)] <- NA
strat$y2 <- round(rgamma(n, 2, 0.5), 4)
strat$x <- round(strat$y2 + runif(n, 1, 3), 4)
strat$cat <- sample(c("a", "b", "c"), n, replace = TRUE, prob = c(0.5, 0.3, 0.2))
strat$cat[sample(n, 8)] <- NA
strat$bin <- rbinom(n, 1, 0.35)
strat$dom <- sample(paste0("d", 1:5), n, replace = TRUE)
strat$age <- sample(c("jeune", "adulte", "senior"), n, replace = TRUE)
strat$sexe <- sample(c("F", "H"), n, replace = TRUE)
rownames(strat) <- NULL
write_data(strat, "strat.csv")

designs <- list(
  strat_fpc = svydesign(ids = ~psu, strata = ~h, fpc = ~N, weights = ~w, data = strat),
  strat_wr = svydesign(ids = ~psu, strata = ~h, weights = ~w, data = strat),
  weights_only = svydesign(ids = ~1, weights = ~w, data = strat)
)

# proportions of every level of `cat` (missing values) and of `bin`: estimate and SE from
# svymean; logit (svyglm, iterative), Korn-Graubard (method = "beta": effective n from the
# design, nrow(design) - 1 and degf(design)) and Wald (method = "mean") intervals with the
# domain's df, and logit / Wald intervals with normal quantiles (df = Inf)
prop_rows <- function(case, d, des, with_deff = FALSE) {
  dfd <- degf(des)
  pm <- svymean(~factor(cat), des, na.rm = TRUE, deff = with_deff)
  for (k in seq_along(coef(pm))) {
    lev <- sub("factor\\(cat\\)", "", names(coef(pm))[k])
    f <- as.formula(paste0("~I(cat == '", lev, "')"))
    cp <- svyciprop(f, des, method = "logit", df = dfd, na.rm = TRUE)
    emit(case, d, "cat", paste0("prop_", lev), coef(pm)[k], SE(pm)[k], confint(cp)[1],
         confint(cp)[2], dfd, if (with_deff) deff(pm)[k] else NA)
    cb <- svyciprop(f, des, method = "beta", na.rm = TRUE)
    emit(case, d, "cat", paste0("beta_", lev), coef(cb), SE(cb), confint(cb)[1], confint(cb)[2],
         dfd)
  }
  for (m in list(c("logit_1", "logit", "t"), c("beta_1", "beta", "t"), c("wald_1", "mean", "t"),
                 c("normal_logit_1", "logit", "normal"), c("normal_wald_1", "mean", "normal"))) {
    df_ci <- if (m[3] == "t") dfd else Inf
    cp <- svyciprop(~I(bin == 1), des, method = m[2], df = df_ci)
    emit(case, d, "bin", m[1], coef(cp), SE(cp), confint(cp)[1], confint(cp)[2], dfd)
  }
}

domain_cases <- function(case, des) {
  # national
  for (v in c("y1", "y2")) {
    m <- svymean(as.formula(paste0("~", v)), des, na.rm = TRUE, deff = TRUE)
    ci <- confint(m, df = degf(des))
    emit(case, "", v, "mean", coef(m), SE(m), ci[1], ci[2], degf(des), deff(m))
    tt <- svytotal(as.formula(paste0("~", v)), des, na.rm = TRUE, deff = TRUE)
    ci <- confint(tt, df = degf(des))
    emit(case, "", v, "total", coef(tt), SE(tt), ci[1], ci[2], degf(des), deff(tt))
  }
  r <- svyratio(~y2, ~x, des)
  ci <- confint(r, df = degf(des))
  emit(case, "", "y2/x", "ratio", coef(r), SE(r), ci[1], ci[2], degf(des))
  prop_rows(case, "", des, with_deff = TRUE)
  # domains (subset = svyby semantics)
  for (d in sort(unique(strat$dom))) {
    sub <- subset(des, dom == d)
    dfd <- degf(sub)
    for (v in c("y1", "y2")) {
      m <- svymean(as.formula(paste0("~", v)), sub, na.rm = TRUE, deff = TRUE)
      ci <- confint(m, df = dfd)
      emit(case, d, v, "mean", coef(m), SE(m), ci[1], ci[2], dfd, deff(m))
      tt <- svytotal(as.formula(paste0("~", v)), sub, na.rm = TRUE)
      ci <- confint(tt, df = dfd)
      emit(case, d, v, "total", coef(tt), SE(tt), ci[1], ci[2], dfd)
    }
    r <- svyratio(~y2, ~x, sub)
    ci <- confint(r, df = dfd)
    emit(case, d, "y2/x", "ratio", coef(r), SE(r), ci[1], ci[2], dfd)
    prop_rows(case, d, sub)
  }
}
for (nm in names(designs)) domain_cases(nm, designs[[nm]])

# normal intervals and level = 0.9 on the stratified design
m <- svymean(~y2, designs$strat_fpc)
ci <- confint(m, level = 0.9)
emit("strat_fpc_normal90", "", "y2", "mean", coef(m), SE(m), ci[1], ci[2], Inf)

# lonely PSU rules: stratum s1 collapsed to one PSU
lonely <- strat
lonely$psu[lonely$h == "s1"] <- "p1_solo"
write_data(lonely, "lonely.csv")
lonely_case <- function(case, des) {
  tt <- svytotal(~y2, des)
  m <- svymean(~y2, des)
  emit(case, "", "y2", "total", coef(tt), SE(tt), df = degf(des))
  emit(case, "", "y2", "mean", coef(m), SE(m), df = degf(des))
  # domains: subset() designs, and svyby over the same domains (same values)
  by_m <- svyby(~y1, ~dom, des, svymean, na.rm = TRUE)
  by_t <- svyby(~y2, ~dom, des, svytotal)
  for (d in sort(unique(lonely$dom))) {
    sub <- subset(des, dom == d)
    dfd <- degf(sub)
    for (v in c("y1", "y2")) {
      m <- svymean(as.formula(paste0("~", v)), sub, na.rm = TRUE)
      ci <- confint(m, df = dfd)
      emit(case, d, v, "mean", coef(m), SE(m), ci[1], ci[2], dfd)
      tt <- svytotal(as.formula(paste0("~", v)), sub, na.rm = TRUE)
      ci <- confint(tt, df = dfd)
      emit(case, d, v, "total", coef(tt), SE(tt), ci[1], ci[2], dfd)
    }
    cp <- svyciprop(~I(bin == 1), sub, method = "logit", df = dfd)
    emit(case, d, "bin", "logit_1", coef(cp), SE(cp), confint(cp)[1], confint(cp)[2], dfd)
    i <- which(by_m$dom == d)
    emit(case, d, "y1", "svyby_mean", by_m$y1[i], SE(by_m)[i], df = dfd)
    i <- which(by_t$dom == d)
    emit(case, d, "y2", "svyby_total", by_t$y2[i], SE(by_t)[i], df = dfd)
  }
}
for (rule in c("remove", "certainty", "adjust")) {
  options(survey.lonely.psu = rule)
  lonely_case(paste0("lonely_", rule), svydesign(ids = ~psu, strata = ~h, weights = ~w,
                                                data = lonely))
  # with the stratum's fpc (N = 13 in s1: the lonely PSU is not a certainty PSU)
  lonely_case(paste0("lonely_", rule, "_fpc"), svydesign(ids = ~psu, strata = ~h, fpc = ~N,
                                                        weights = ~w, data = lonely))
}
options(survey.lonely.psu = "fail")

# ------------------------------------------------------------------ calibration
base <- designs$strat_fpc
pop_age <- data.frame(age = c("adulte", "jeune", "senior"), Freq = c(520, 310, 270))
pop_sexe <- data.frame(sexe = c("F", "H"), Freq = c(570, 530))
write.csv(rbind(data.frame(variable = "age", level = pop_age$age, total = pop_age$Freq),
                data.frame(variable = "sexe", level = pop_sexe$sexe, total = pop_sexe$Freq)),
          file.path(out_dir, "margins.csv"), row.names = FALSE)
ps <- postStratify(base, ~age, pop_age)
domain_cases("poststratify", ps)
rk <- calibrate(base, ~age + sexe,
                population = c(`(Intercept)` = 1100, agejeune = 310, agesenior = 270, sexeH = 530),
                calfun = "raking", epsilon = 1e-12, maxit = 200)
domain_cases("rake", rk)
lin <- calibrate(base, ~age + sexe,
                 population = c(`(Intercept)` = 1100, agejeune = 310, agesenior = 270, sexeH = 530),
                 calfun = "linear")
domain_cases("linear", lin)
rk_ipf <- rake(base, list(~age, ~sexe), list(pop_age, pop_sexe),
               control = list(maxit = 200, epsilon = 1e-12))
m <- svymean(~y2, rk_ipf)
emit("rake_ipf_r", "", "y2", "mean", coef(m), SE(m))
weights_out <- data.frame(poststratify = weights(ps), rake = weights(rk), linear = weights(lin),
                          rake_ipf = weights(rk_ipf))
write_data(weights_out, "calibrated_weights.csv")

# ------------------------------------------------------------------ domains crossing two factors
# svyby(~v, ~dom + sexe) (one variable at a time: na.rm drops rows per variable, as estimates.py)
by2_case <- function(case, des) {
  for (v in c("y1", "y2", "bin")) {
    f <- as.formula(paste0("~", v))
    bm <- svyby(f, ~dom + sexe, des, svymean, na.rm = TRUE)
    bt <- svyby(f, ~dom + sexe, des, svytotal, na.rm = TRUE)
    for (i in seq_len(nrow(bm))) {
      sub <- subset(des, dom == bm$dom[i] & sexe == bm$sexe[i])
      key <- paste(bm$dom[i], bm$sexe[i], sep = "|")
      emit(case, key, v, "mean", bm[[v]][i], SE(bm)[i], df = degf(sub))
      j <- which(bt$dom == bm$dom[i] & bt$sexe == bm$sexe[i])
      emit(case, key, v, "total", bt[[v]][j], SE(bt)[j], df = degf(sub))
    }
  }
}
by2_case("by2_strat_fpc", designs$strat_fpc)
by2_case("by2_linear", lin)

# ------------------------------------------------------------------ weight trimming (trimWeights)
# R redistributes the trimmed amount additively and equally over the weights that were inside
# the bounds, once (strict = FALSE) or until no weight is outside (strict = TRUE); a calibrated
# design keeps its calibration in the variance.
trim_specs <- list(
  trim_fpc = list(des = designs$strat_fpc, lower = 1.5, upper = 5, strict = FALSE),
  trim_fpc_strict = list(des = designs$strat_fpc, lower = 1.5, upper = 5, strict = TRUE),
  trim_linear = list(des = lin, lower = 2, upper = 18, strict = FALSE),
  trim_linear_strict = list(des = lin, lower = 2, upper = 18, strict = TRUE)
)
trim_meta <- data.frame()
trim_weights <- list()
for (nm in names(trim_specs)) {
  sp <- trim_specs[[nm]]
  td <- trimWeights(sp$des, lower = sp$lower, upper = sp$upper, strict = sp$strict)
  trim_weights[[nm]] <- weights(td)
  trim_meta <- rbind(trim_meta, data.frame(case = nm, lower = sp$lower, upper = sp$upper,
                                           strict = sp$strict))
  for (d in c("", sort(unique(strat$dom)))) {
    sub <- if (d == "") td else subset(td, dom == d)
    for (v in c("y1", "y2")) {
      m <- svymean(as.formula(paste0("~", v)), sub, na.rm = TRUE)
      emit(nm, d, v, "mean", coef(m), SE(m), df = degf(sub))
      tt <- svytotal(as.formula(paste0("~", v)), sub, na.rm = TRUE)
      emit(nm, d, v, "total", coef(tt), SE(tt), df = degf(sub))
    }
  }
}
write_data(as.data.frame(trim_weights), "trimmed_weights.csv")
write_data(trim_meta, "trim_meta.csv")

# ------------------------------------------------------------------ data set 2: two-stage with fpc
set.seed(7)
two <- do.call(rbind, lapply(1:3, function(h) {
  do.call(rbind, lapply(seq_len(3 + h), function(a) {
    n2 <- sample(2:4, 1)
    do.call(rbind, lapply(seq_len(n2), function(b) {
      m <- sample(3:6, 1)
      data.frame(h = paste0("t", h), psu = paste0("q", h, "_", a), ssu = paste0("u", h, "_", a, "_", b),
                 fpc1 = 10 + 2 * h, fpc2 = n2 + sample(0:5, 1), stringsAsFactors = FALSE)[rep(1, m), ]
    }))
  }))
}))
# fpc2 must be constant within a PSU
two$fpc2 <- ave(two$fpc2, two$psu, FUN = max)
nt <- nrow(two)
two$w <- round(runif(nt, 2, 9), 3)
two$y <- round(rnorm(nt, 50, 10), 3)
two$y[sample(nt, 6)] <- NA
two$dom <- sample(c("A", "B", "C"), nt, replace = TRUE)
two$cat2 <- sample(c("u", "v", "w"), nt, replace = TRUE, prob = c(0.5, 0.3, 0.2))
two$cat2[sample(nt, 7)] <- NA
two$frac1 <- ave(as.numeric(factor(two$psu)), two$h, FUN = function(v) length(unique(v))) / two$fpc1
rownames(two) <- NULL
write_data(two, "twostage.csv")
d2 <- svydesign(ids = ~psu + ssu, strata = ~h, fpc = ~fpc1 + fpc2, weights = ~w, data = two)
for (d in c("", sort(unique(two$dom)))) {
  sub <- if (d == "") d2 else subset(d2, dom == d)
  m <- svymean(~y, sub, na.rm = TRUE, deff = TRUE)
  ci <- confint(m, df = degf(sub))
  emit("twostage", d, "y", "mean", coef(m), SE(m), ci[1], ci[2], degf(sub), deff(m))
  tt <- svytotal(~y, sub, na.rm = TRUE)
  ci <- confint(tt, df = degf(sub))
  emit("twostage", d, "y", "total", coef(tt), SE(tt), ci[1], ci[2], degf(sub))
  # proportions of a categorical with missing values: logit and Korn-Graubard intervals
  pm <- svymean(~factor(cat2), sub, na.rm = TRUE)
  for (k in seq_along(coef(pm))) {
    lev <- sub("factor\\(cat2\\)", "", names(coef(pm))[k])
    f <- as.formula(paste0("~I(cat2 == '", lev, "')"))
    cp <- svyciprop(f, sub, method = "logit", df = degf(sub), na.rm = TRUE)
    emit("twostage", d, "cat2", paste0("prop_", lev), coef(pm)[k], SE(pm)[k], confint(cp)[1],
         confint(cp)[2], degf(sub))
    cb <- svyciprop(f, sub, method = "beta", na.rm = TRUE)
    emit("twostage", d, "cat2", paste0("beta_", lev), coef(cb), SE(cb), confint(cb)[1],
         confint(cb)[2], degf(sub))
  }
}
# weights implied by the fpc (no weight column)
d0 <- svydesign(ids = ~psu + ssu, strata = ~h, fpc = ~fpc1 + fpc2, data = two)
m <- svymean(~y, d0, na.rm = TRUE)
emit("twostage_fpc_weights", "", "y", "mean", coef(m), SE(m))
d1 <- svydesign(ids = ~psu, strata = ~h, fpc = ~fpc1, weights = ~w, data = two)
m <- svymean(~y, d1, na.rm = TRUE)
emit("onestage_of_twostage", "", "y", "mean", coef(m), SE(m))

# ------------------------------------------------------------------ replicate weights
# domains of a replicate design: subset() keeps the domain's rows and its df is the rank of their
# replicate weights - 1 (degf of the subset), used for every interval below
rep_case <- function(case, rd, write = TRUE) {
  for (d in c("", sort(unique(strat$dom)))) {
    sub <- if (d == "") rd else subset(rd, dom == d)
    dfd <- degf(sub)
    for (v in c("y1", "y2")) {
      m <- svymean(as.formula(paste0("~", v)), sub, na.rm = TRUE)
      ci <- confint(m, df = dfd)
      emit(case, d, v, "mean", coef(m), SE(m), ci[1], ci[2], dfd)
      tt <- svytotal(as.formula(paste0("~", v)), sub, na.rm = TRUE)
      ci <- confint(tt, df = dfd)
      emit(case, d, v, "total", coef(tt), SE(tt), ci[1], ci[2], dfd)
    }
    r <- svyratio(~y2, ~x, sub)
    ci <- confint(r, df = dfd)
    emit(case, d, "y2/x", "ratio", coef(r), SE(r), ci[1], ci[2], dfd)
    if (write) prop_rows(case, d, sub)
  }
  meta <- data.frame(scale = rd$scale, rscales = rd$rscales, mse = rd$mse, degf = degf(rd))
  write_data(meta, paste0("repmeta_", case, ".csv"))
  if (write) {
    rw <- weights(rd, "analysis")
    colnames(rw) <- paste0("rep", seq_len(ncol(rw)))
    write_data(as.data.frame(rw), paste0("repweights_", case, ".csv"))
  }
}
rep_case("jkn", as.svrepdesign(designs$strat_wr, type = "JKn"))
rep_case("jk1", as.svrepdesign(svydesign(ids = ~psu, weights = ~w, data = strat), type = "JK1"))
set.seed(99)
rep_case("bootstrap", as.svrepdesign(designs$strat_wr, type = "bootstrap", replicates = 40))
# BRR/Fay need two PSUs per stratum: pair the PSUs within strata
brr <- strat
brr$pair <- paste0(brr$h, "_", (as.integer(factor(brr$psu)) %% 2))
brr$half <- as.integer(factor(brr$psu)) %% 2
write_data(brr, "brr.csv")
brr_des <- svydesign(ids = ~pair, strata = ~h, weights = ~w, data = brr)
rep_case("brr", as.svrepdesign(brr_des, type = "BRR"))
rep_case("fay", as.svrepdesign(brr_des, type = "Fay", fay.rho = 0.3))

# R's default scales (no scale= given): JK1 (R - 1)/R, bootstrap 1/(R - 1)
jk1 <- as.svrepdesign(svydesign(ids = ~psu, weights = ~w, data = strat), type = "JK1")
jk1_default <- suppressWarnings(svrepdesign(data = strat, repweights = weights(jk1, "analysis"),
                                            weights = ~w, type = "JK1", combined.weights = TRUE))
rep_case("jk1_default", jk1_default, write = FALSE)
set.seed(99)
boot <- as.svrepdesign(designs$strat_wr, type = "bootstrap", replicates = 40)
boot_default <- svrepdesign(data = strat, repweights = weights(boot, "analysis"), weights = ~w,
                            type = "bootstrap", combined.weights = TRUE)
rep_case("bootstrap_default", boot_default, write = FALSE)

res <- do.call(rbind, rows)
write.csv(res, file.path(out_dir, "results.csv"), row.names = FALSE)
cat("wrote", nrow(res), "reference rows to", out_dir, "\n")

# Reference values from R `survey` for tests/test_models_r_demo.py: the demo study's models.
#
#   .venv/bin/python r/models_demo_frame.py   (after `make report`; writes frame.csv, margins.csv)
#   Rscript r/models_demo_reference.R         (from the repository root; R >= 4, survey)
#
# Designs: the demo's stratified cluster design with fpc and its raking to the region and
# respondent-type margins (calibrate(calfun = "raking"), whose variance uses the calibration
# residuals as evalterritoire does), and the same without fpc (superpopulation variance).
# Models: svyglm gaussian, svyglm quasibinomial, svyolr (cumulative logit). Writes
# coefficients.csv and vcov.csv with 17 significant digits; CI does not need R.
suppressMessages(library(survey))
options(survey.lonely.psu = "fail")
dir <- "tests/fixtures/r/models_demo"
fmt <- function(x) ifelse(is.na(x), "NA", sprintf("%.17g", as.numeric(x)))
frame <- read.csv(file.path(dir, "frame.csv"), colClasses = c(id_strate = "character",
  id_psu = "character", id_region_code = "character", id_type_repondant = "character"))
frame$stage <- factor(frame$stage)
frame$dyn_statut_f <- factor(frame$dyn_statut, levels = sort(unique(na.omit(frame$dyn_statut))))
margins <- read.csv(file.path(dir, "margins.csv"), colClasses = "character")
margins$total <- as.numeric(margins$total)

population <- function(design) {
  # calibrate() wants totals of the model matrix columns of ~ id_region_code + id_type_repondant
  mm <- model.matrix(~ id_region_code + id_type_repondant, model.frame(design))
  tot <- sapply(colnames(mm), function(col) {
    if (col == "(Intercept)") return(sum(margins$total[margins$variable == "id_type_repondant"]))
    for (v in c("id_region_code", "id_type_repondant")) {
      if (startsWith(col, v)) {
        lev <- substring(col, nchar(v) + 1)
        return(margins$total[margins$variable == v & margins$level == lev])
      }
    }
    stop(col)
  })
  tot
}

base <- svydesign(ids = ~id_psu, strata = ~id_strate, fpc = ~id_fpc, weights = ~id_poids,
                  data = frame)
raked <- calibrate(base, ~ id_region_code + id_type_repondant, population = population(base),
                   calfun = "raking", epsilon = 1e-13, maxit = 500)
base_wr <- svydesign(ids = ~id_psu, strata = ~id_strate, weights = ~id_poids, data = frame)
raked_wr <- calibrate(base_wr, ~ id_region_code + id_type_repondant,
                      population = population(base_wr), calfun = "raking", epsilon = 1e-13,
                      maxit = 500)
designs <- list(fpc = base, raked = raked, raked_superpopulation = raked_wr)

rename <- function(terms) {
  terms <- sub("^\\(Intercept\\)$", "Intercept", terms)
  terms <- sub("^stage([0-9]+)$", "C(stage)[T.\\1]", terms)
  terms <- sub("^id_type_repondant(.+)$", "C(id_type_repondant)[T.\\1]", terms)
  terms <- sub("^([0-9]+)\\|([0-9]+)$", "cut_\\1/\\2", terms)
  terms
}
coef_rows <- list()
vcov_rows <- list()
emit <- function(case, est, V, df) {
  se <- sqrt(diag(V))
  terms <- rename(names(est))
  p <- if (is.na(df)) NA else 2 * pt(-abs(est / se), df)
  coef_rows[[length(coef_rows) + 1]] <<- data.frame(case = case, term = terms,
    estimate = fmt(est), se = fmt(se), df = fmt(df), p_value = fmt(p), stringsAsFactors = FALSE)
  vcov_rows[[length(vcov_rows) + 1]] <<- data.frame(case = case,
    row_term = rep(terms, times = length(terms)), col_term = rep(terms, each = length(terms)),
    value = fmt(as.vector(V)), stringsAsFactors = FALSE)
}
for (dname in names(designs)) {
  d <- designs[[dname]]
  # converged references: glm's default epsilon (1e-8) leaves the working weights of the last
  # iteration ~1e-5 away from the fixed point, which shows in the logistic SEs
  ctl <- glm.control(epsilon = 1e-14, maxit = 100)
  lin <- svyglm(score_global ~ stage + id_type_repondant + ctx_taux_chomage, design = d,
                control = ctl)
  emit(paste0("linear_", dname), coef(lin), vcov(lin), lin$df.residual)
  logit <- svyglm(dyn_animateur_existe ~ stage + ctx_presence_qpv, design = d,
                  family = quasibinomial(), control = ctl)
  emit(paste0("logistic_", dname), coef(logit), vcov(logit), logit$df.residual)
  # svyolr does not drop missing outcomes: subset (domain; a calibrated design keeps the rows
  # with zero weight, whose placeholder outcome then contributes nothing)
  d_ord <- subset(d, !is.na(dyn_statut) & !is.na(ctx_taux_pauvrete) & !is.na(stage))
  miss <- is.na(d_ord$variables$dyn_statut_f)
  d_ord$variables$dyn_statut_f[miss] <- levels(frame$dyn_statut_f)[1]
  ord <- svyolr(dyn_statut_f ~ stage + ctx_taux_pauvrete, design = d_ord,
                control = list(reltol = 1e-15, maxit = 5000))
  est <- coef(ord)  # slopes then the zeta cut-points
  emit(paste0("ordinal_", dname), est, vcov(ord)[names(est), names(est)], NA)
}
write.csv(do.call(rbind, coef_rows), file.path(dir, "coefficients.csv"), row.names = FALSE)
write.csv(do.call(rbind, vcov_rows), file.path(dir, "vcov.csv"), row.names = FALSE)
write.csv(data.frame(raked = fmt(weights(raked))), file.path(dir, "raked_weights.csv"),
          row.names = FALSE)
cat("R", R.version$major, R.version$minor, "survey", as.character(packageVersion("survey")), "\n")

// lenrisk calculator: reads the form, posts the record to v1/predict (relative to this page, same origin)
// and draws the answer. Everything the service returns is written with textContent, never as HTML.
"use strict";

(function () {
  const config = JSON.parse(document.body.dataset.config);
  const form = document.getElementById("record-form");
  const results = document.getElementById("results");
  const formError = document.getElementById("form-error");
  const access = document.getElementById("access");
  const aboutModels = document.getElementById("about-models");
  const submit = document.getElementById("submit");

  const ACCESS_MESSAGE =
    "The risk service refused this page's request because it requires an API key, and this deployment " +
    "does not provide one for the calculator. The calculator never asks for a key. Ask the team that runs " +
    "lenrisk to give the page access (for example through the sign-in proxy that serves it; " +
    "see docs/calculator.md).";

  const RANGE_ERRORS = new Set(["greater_than_equal", "less_than_equal", "greater_than", "less_than"]);

  // ---- small DOM helpers -------------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function percent(p) {
    return (p * 100).toFixed(1) + "%";
  }

  function cutPoint(p) {
    return +(p * 100).toFixed(1) + "%";
  }

  function averageRisk(p) {
    return typeof p === "number" ? Math.round(100 * p) + "%" : "n/a";
  }

  const PLAIN = "compared with an average patient in the development data";

  // ---- the uncertainty range of a risk -------------------------------------------------------------
  const BANDS = ["low", "intermediate", "high"];
  const OUTSIDE = new Set(["outside_training_range", "not_seen_in_training"]);

  // Whole percent: the range is an estimate's uncertainty, a decimal would claim more than it knows.
  function wholePercent(p) {
    return Math.round(p * 100) + "%";
  }

  // The band of a risk, as the service decides it (high from high_from, intermediate from intermediate_from).
  function bandOf(p, cuts) {
    return p >= cuts.high_from ? "high" : p >= cuts.intermediate_from ? "intermediate" : "low";
  }

  // "within the intermediate band", "spans the low and intermediate bands", "spans the low, ... bands".
  function bandWords(interval, cuts) {
    const from = BANDS.indexOf(bandOf(interval.lower, cuts));
    const to = BANDS.indexOf(bandOf(interval.upper, cuts));
    const spanned = BANDS.slice(from, to + 1);
    if (spanned.length === 1) return "The range lies within the " + spanned[0] + " band.";
    const listed = spanned.length === 2 ? spanned.join(" and ") : spanned.slice(0, -1).join(", ") + " and " + spanned.at(-1);
    return "The range spans the " + listed + " bands.";
  }

  const RANGE_MEANING =
    "It is the uncertainty of the model's estimate, from the size of the data the model was developed on, " +
    "not uncertainty about whether this patient will have the outcome.";

  function rangeBlock(outcome, warnings) {
    const interval = outcome.interval;
    if (interval) {
      const level = Math.round(interval.level * 100) + "%";
      return el(
        "div",
        { class: "range" },
        el(
          "p",
          { class: "range-values" },
          level + " range ",
          el("span", {
            class: "range-text",
            "data-lower": String(interval.lower),
            "data-upper": String(interval.upper),
            text: wholePercent(interval.lower) + "–" + wholePercent(interval.upper),
          })
        ),
        el("p", { class: "range-bands", text: bandWords(interval, outcome.risk_band_cut_points) }),
        el("p", { class: "range-meaning", text: RANGE_MEANING })
      );
    }
    const outside = (warnings || []).some((w) => OUTSIDE.has(w.kind));
    return el(
      "div",
      { class: "range" },
      el("p", {
        class: "range-none",
        text: outside
          ? "No range: this patient lies outside the data the model was developed on (see the applicability " +
            "warnings), where the risk is extrapolated and a range would look more certain than it is."
          : "No range: this model version does not give one for its risks.",
      })
    );
  }

  function valueLabel(field, value) {
    const labels = config.values[field] || {};
    return labels[String(value)] || String(value);
  }

  // ---- the record --------------------------------------------------------------------------------
  // The record and the required fields left empty (nothing is pre-filled, so nothing is sent for them).
  function readRecord() {
    const record = {};
    const missing = [];
    for (const field of form.querySelectorAll("[data-field]")) {
      const name = field.dataset.field;
      const kind = field.dataset.kind;
      if (kind === "binary") {
        record[name] = field.querySelector("input").checked ? 1 : 0;
        continue;
      }
      let raw;
      if (field.dataset.control === "radio") {
        const checked = field.querySelector("input:checked");
        raw = checked ? checked.value : "";
      } else {
        raw = field.querySelector("input, select").value.trim();
      }
      if (raw === "") {
        if (field.dataset.nullable === "true") record[name] = null; // empty = unknown
        else if (field.dataset.required === "true") missing.push(name);
        continue;
      }
      if (kind === "number" || kind === "integer") {
        const number = Number(raw);
        record[name] = Number.isFinite(number) ? number : raw;
      } else {
        record[name] = raw;
      }
    }
    return { record, missing };
  }

  // ---- errors ------------------------------------------------------------------------------------
  function clearErrors() {
    formError.hidden = true;
    formError.replaceChildren();
    for (const slot of form.querySelectorAll(".field-error")) {
      slot.hidden = true;
      slot.textContent = "";
    }
    for (const bad of form.querySelectorAll("[aria-invalid]")) bad.removeAttribute("aria-invalid");
    for (const bad of form.querySelectorAll(".invalid")) bad.classList.remove("invalid");
  }

  function errorText(item, field) {
    if (item.type === "missing") return "Required.";
    const allowed = field && config.rules[field] ? config.rules[field] : "";
    if (allowed && RANGE_ERRORS.has(item.type)) return "Outside the allowed range: " + allowed + ".";
    const rule = allowed ? " Allowed: " + allowed + "." : "";
    const msg = String(item.msg || "invalid").replace(/^Value error, /, "");
    return msg.charAt(0).toUpperCase() + msg.slice(1) + (msg.endsWith(".") ? "" : ".") + rule;
  }

  function fieldOf(item) {
    const loc = Array.isArray(item.loc) ? item.loc : [];
    const name = loc[0] === "body" ? loc[1] : loc[0];
    return typeof name === "string" ? name : null;
  }

  function showFieldErrors(detail) {
    clearErrors();
    const items = Array.isArray(detail) ? detail : [{ loc: [], type: "invalid", msg: String(detail) }];
    const summary = el("ul");
    let firstControl = null;
    for (const item of items) {
      const name = fieldOf(item);
      const slot = name && document.getElementById(name + "-error");
      const text = errorText(item, name);
      const label = name ? config.labels[name] || name : "Record";
      if (slot) {
        slot.textContent = (slot.textContent ? slot.textContent + " " : "") + text;
        slot.hidden = false;
        const wrapper = slot.closest("[data-field], fieldset");
        if (wrapper) wrapper.classList.add("invalid");
        const control = document.getElementById("f-" + name) || (wrapper && wrapper.querySelector("input, select"));
        if (control) {
          control.setAttribute("aria-invalid", "true");
          firstControl = firstControl || control;
          const link = el("a", { href: "#" + control.id, text: label + ": " + text });
          link.addEventListener("click", (event) => {
            event.preventDefault();
            control.focus();
          });
          summary.append(el("li", {}, link));
          continue;
        }
      }
      summary.append(el("li", { text: (name ? label + ": " : "") + text }));
    }
    formError.append(el("p", { class: "form-error-title", text: "Please check the highlighted entries." }), summary);
    formError.hidden = false;
    results.replaceChildren(el("p", { class: "placeholder", text: "No result: some entries need correcting." }));
    (firstControl || formError).focus();
  }

  function showProblem(message) {
    results.replaceChildren(el("div", { class: "problem", role: "alert", text: message }));
  }

  function showAccessProblem() {
    access.textContent = ACCESS_MESSAGE;
    access.hidden = false;
    showProblem(ACCESS_MESSAGE);
  }

  async function problemFor(response) {
    const requestId = response.headers.get("X-Request-ID");
    let detail = "";
    try {
      const body = await response.json();
      detail = typeof body.detail === "string" ? body.detail : "";
    } catch (_) {
      detail = "";
    }
    if (response.status === 503) {
      return "The service is not ready (models loading or the audit store unavailable). Try again in a few seconds.";
    }
    if (response.status === 413) return "The request was too large for the service.";
    return (
      "The service could not answer (HTTP " + response.status + (detail ? ": " + detail : "") + ")." +
      (requestId ? " Quote request ID " + requestId + " when reporting it." : "")
    );
  }

  // ---- the answer --------------------------------------------------------------------------------
  function contributionText(item) {
    const v = item.value;
    switch (item.feature) {
      case "age":
        return "Age " + v + " years";
      case "sex":
        return valueLabel("sex", v) + " sex";
      case "regimen":
        return v + " (" + (config.regimens[v] || v) + ")";
      case "setting":
        return "Setting: " + valueLabel("setting", v).toLowerCase();
      case "start_dose_mg":
        return "Starting dose " + v + " mg";
      case "ecog":
        return v === null ? "ECOG unknown" : "ECOG " + v;
      case "prior_lines":
        return v + (v === 1 ? " prior line" : " prior lines");
      case "comorbidities":
        return Array.isArray(v) && v.length
          ? "Comorbidities: " + v.map((c) => config.comorbidities[c] || c).join(", ")
          : "No listed comorbidity";
      case "renal_function":
        return String(v);
      default:
        return (config.labels[item.feature] || item.feature) + ": " + (v === null ? "unknown" : v);
    }
  }

  function warningText(w) {
    // The service names the field as in the contract; say it as the form does.
    const name = config.labels[w.field] || w.field;
    const spoken = /^[A-Z][a-z]/.test(name) ? name.charAt(0).toLowerCase() + name.slice(1) : name;
    const word = new RegExp("\\b" + String(w.field).replace(/[^A-Za-z0-9_]/g, "") + "\\b", "g");
    const text = String(w.message).replace(word, spoken);
    return text.charAt(0).toUpperCase() + text.slice(1) + (text.endsWith(".") ? "" : ".");
  }

  function effectText(c) {
    if (Math.abs(c) < 0.005) return "no material effect";
    return (c > 0 ? "raises risk" : "lowers risk") + " (odds ×" + Math.exp(c).toFixed(2) + ")";
  }

  function chart(outcome, scale) {
    const list = el("ol", { class: "contributions" });
    for (const item of outcome.contributions) {
      const c = item.contribution;
      const direction = Math.abs(c) < 0.005 ? "neutral" : c > 0 ? "raises" : "lowers";
      const bar = el("span", { class: "bar bar-" + direction });
      bar.style.width = ((Math.abs(c) / scale) * 50).toFixed(2) + "%";
      const track = el("span", { class: "track", "aria-hidden": "true" }, bar);
      list.append(
        el(
          "li",
          { class: "contribution " + direction },
          el("span", { class: "factor", text: contributionText(item) + ": " }),
          track,
          el("span", { class: "effect", text: effectText(c) })
        )
      );
    }
    return list;
  }

  function outcomeCard(key, outcome, scale, warnings) {
    const band = outcome.risk_band;
    const cuts = outcome.risk_band_cut_points;
    const average = 1 / (1 + Math.exp(-outcome.base_value));
    return el(
      "article",
      { class: "outcome band-" + band, id: "result-" + key, "aria-labelledby": "title-" + key },
      el("h3", { id: "title-" + key, text: config.outcomes[key] || key }),
      el(
        "p",
        { class: "headline" },
        el("span", { class: "probability", "data-probability": String(outcome.probability), text: percent(outcome.probability) }),
        el("span", { class: "band", text: band + " risk" })
      ),
      rangeBlock(outcome, warnings),
      el("p", {
        class: "bands",
        text:
          "Bands for this outcome: low below " + cutPoint(cuts.intermediate_from) + ", intermediate " +
          cutPoint(cuts.intermediate_from) + "–" + cutPoint(cuts.high_from) + ", high from " +
          cutPoint(cuts.high_from) + ". Average risk in the development data: " +
          averageRisk(outcome.average_risk) + ".",
      }),
      el("h4", { text: "What drives it for this patient" }),
      el("p", {
        class: "waterfall-start",
        text:
          "Starting point: an average patient in the development data, " + percent(average) +
          " (averaged on the model's log-odds scale, so not quite the average risk). Each factor below raises " +
          "or lowers this patient's risk " + PLAIN + ".",
      }),
      chart(outcome, scale),
      el("p", { class: "waterfall-end", text: "This patient: " + percent(outcome.probability) }),
      el("p", { class: "model-version", text: "Model " + outcome.model.name + ", version " + outcome.model.version })
    );
  }

  function renderAnswer(answer) {
    const keys = Object.keys(config.outcomes).filter((k) => answer[k]);
    const all = keys.flatMap((k) => answer[k].contributions.map((c) => Math.abs(c.contribution)));
    const scale = Math.max(0.1, ...all); // one scale for both outcomes, so their bars compare
    const parts = [];
    if (answer.warnings && answer.warnings.length) {
      const list = el("ul");
      for (const w of answer.warnings) {
        list.append(el("li", { text: warningText(w) }));
      }
      parts.push(
        el(
          "div",
          { class: "warnings", role: "alert", id: "warnings" },
          el("h3", { text: "Applicability warnings: interpret with caution" }),
          list
        )
      );
    }
    const grid = el("div", { class: "outcomes" });
    for (const key of keys) grid.append(outcomeCard(key, answer[key], scale, answer.warnings));
    parts.push(grid);
    parts.push(
      el("p", {
        class: "legend",
        text:
          "Bars: each factor's contribution on the log-odds scale; to the right raises, to the left lowers " +
          "the risk " + PLAIN + ". Request ID " + answer.request_id + ".",
      })
    );
    results.replaceChildren(...parts);
  }

  async function calculate(event) {
    event.preventDefault();
    clearErrors();
    const { record, missing } = readRecord();
    if (missing.length) {
      showFieldErrors(missing.map((name) => ({ loc: [name], type: "missing" })));
      return;
    }
    submit.disabled = true;
    results.setAttribute("aria-busy", "true");
    try {
      const response = await fetch("v1/predict", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(record),
        credentials: "same-origin",
      });
      if (response.ok) {
        access.hidden = true;
        renderAnswer(await response.json());
      } else if (response.status === 401 || response.status === 403) {
        showAccessProblem();
      } else if (response.status === 422) {
        showFieldErrors((await response.json()).detail);
      } else {
        showProblem(await problemFor(response));
      }
    } catch (_) {
      showProblem("The risk service could not be reached. Check the connection and try again.");
    } finally {
      submit.disabled = false;
      results.setAttribute("aria-busy", "false");
    }
  }

  // ---- about this model --------------------------------------------------------------------------
  function plain(markdown) {
    return markdown
      .replace(/\[([^\]]*)\]\([^)]*\)/g, "$1")
      .replace(/\*\*|__|`/g, "")
      .replace(/\s+/g, " ")
      .trim();
  }

  function section(card, title) {
    const lines = card.split("\n");
    const start = lines.findIndex((line) => line.startsWith("## " + title));
    if (start < 0) return [];
    const rest = lines.slice(start + 1);
    const end = rest.findIndex((line) => line.startsWith("## "));
    return end < 0 ? rest : rest.slice(0, end);
  }

  function bullets(lines) {
    const items = [];
    for (const line of lines) {
      if (line.startsWith("- ")) items.push(line.slice(2));
      else if (/^\s+\S/.test(line) && items.length) items[items.length - 1] += " " + line.trim();
    }
    return items.map(plain);
  }

  function metric(value, digits) {
    return typeof value === "number" ? value.toFixed(digits) : "n/a";
  }

  function renderModels(models) {
    const parts = [];
    const card = models.length ? models[0].model_card : "";
    const data = section(card, "Data");
    const firstParagraph = plain(data.filter((l) => l.trim() && !l.startsWith("- ")).slice(0, 1).join(" "));
    parts.push(el("h3", { text: "Data" }));
    parts.push(
      el("p", {
        text: /synthetic/i.test(firstParagraph)
          ? "Synthetic data: no real patient is in it. The cohort is generated with parameters cited from " +
            "published studies, so performance reflects the generator, not a clinic."
          : firstParagraph || "See the model card.",
      })
    );
    parts.push(el("h3", { text: "Performance on new patients (estimated by bootstrap validation)" }));
    const perf = el("ul", { class: "performance" });
    for (const m of models) {
      const x = m.metrics || {};
      perf.append(
        el(
          "li",
          {},
          el("strong", { text: (config.outcomes[m.outcome] || m.outcome) + ". " }),
          "AUC " + metric(x.validated_roc_auc, 2) + " (95% CI " + metric(x.validated_roc_auc_ci_lower, 2) + "–" +
            metric(x.validated_roc_auc_ci_upper, 2) + "); calibration slope " +
            metric(x.validated_calibration_slope, 2) + " (ideal 1); average risk in the development data " +
            averageRisk(x.average_risk) + ". " +
            m.family + " model " + m.name + ", version " + m.version + "." +
            (m.small_development_sample ? " Developed on too few patients: a rough indication only." : "")
        )
      );
    }
    parts.push(perf);
    const intended = bullets(section(card, "Intended use"));
    if (intended.length) {
      parts.push(el("h3", { text: "Intended use" }));
      parts.push(el("ul", {}, ...intended.map((t) => el("li", { text: t }))));
    }
    for (const m of models) {
      parts.push(
        el(
          "details",
          { class: "card" },
          el("summary", { text: "Full model card: " + (config.outcomes[m.outcome] || m.outcome) }),
          el("pre", { text: m.model_card })
        )
      );
    }
    aboutModels.replaceChildren(...parts);
    showAverages(models);
  }

  // The development data's average risk beside each outcome's bands ("n/a" when the models are unknown).
  function showAverages(models) {
    for (const slot of document.querySelectorAll("#risk-bands .average-risk")) {
      const model = models.find((m) => m.outcome === slot.dataset.outcome);
      slot.textContent = averageRisk(model && model.metrics ? model.metrics.average_risk : null);
    }
  }

  async function loadModels(attempt) {
    try {
      const response = await fetch("v1/models", { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (response.ok) {
        renderModels((await response.json()).models);
      } else if (response.status === 401 || response.status === 403) {
        access.textContent = ACCESS_MESSAGE;
        access.hidden = false;
        aboutModels.replaceChildren(el("p", { class: "placeholder", text: "The model card is not available to this page." }));
        showAverages([]);
      } else if (response.status === 503 && attempt < 20) {
        aboutModels.replaceChildren(el("p", { class: "placeholder", text: "The models are loading…" }));
        setTimeout(() => loadModels(attempt + 1), 3000);
      } else {
        aboutModels.replaceChildren(el("p", { class: "placeholder", text: await problemFor(response) }));
        showAverages([]);
      }
    } catch (_) {
      aboutModels.replaceChildren(el("p", { class: "placeholder", text: "The model card could not be loaded." }));
      showAverages([]);
    }
  }

  form.addEventListener("submit", calculate);
  form.addEventListener("reset", () => {
    clearErrors();
    results.replaceChildren(el("p", { class: "placeholder", text: "Form reset. Enter the patient and the planned line." }));
  });
  loadModels(0);
})();

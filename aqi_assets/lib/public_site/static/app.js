/* The public air-quality map. Plain JavaScript over Leaflet and supercluster (both vendored); every text from the
 * data or a catalogue goes in through textContent or SVG text nodes, never as HTML. window.aqiSite exposes the
 * state for the browser tests. */
(function () {
  "use strict";

  var config = JSON.parse(document.getElementById("site-config").textContent);

  // Official colour scales. US EPA AQI (Technical Assistance Document, RGB values); UK DAQI per index (Defra).
  var US_SCALE = [
    { lo: 0, hi: 50, name: "Good", colour: "#00e400" },
    { lo: 51, hi: 100, name: "Moderate", colour: "#ffff00" },
    { lo: 101, hi: 150, name: "Unhealthy for Sensitive Groups", colour: "#ff7e00" },
    { lo: 151, hi: 200, name: "Unhealthy", colour: "#ff0000" },
    { lo: 201, hi: 300, name: "Very Unhealthy", colour: "#8f3f97" },
    { lo: 301, hi: 500, name: "Hazardous", colour: "#7e0023" }
  ];
  var UK_COLOURS = ["#9cff9c", "#31ff00", "#31cf00", "#ffff00", "#ffcf00", "#ff9a00", "#ff6464", "#ff0000",
    "#990000", "#ce30ff"];
  var UK_BANDS = [
    { lo: 1, hi: 3, name: "Low" }, { lo: 4, hi: 6, name: "Moderate" },
    { lo: 7, hi: 9, name: "High" }, { lo: 10, hi: 10, name: "Very High" }
  ];
  // Temperature and humidity classes (lower bounds; the first class is open below). Colour-blind-safe
  // ColorBrewer palettes: RdYlBu (diverging, blue cold to red warm) and Blues (sequential).
  var CLIMATE = {
    t: { bounds: [-Infinity, -10, 0, 10, 20, 30], colours: ["#4575b4", "#91bfdb", "#e0f3f8", "#fee090", "#fc8d59",
      "#d73027"], unit: " °C", digits: 1 },
    rh: { bounds: [-Infinity, 30, 50, 70, 90], colours: ["#eff3ff", "#bdd7e7", "#6baed6", "#3182bd", "#08519c"],
      unit: " %", digits: 0 }
  };
  var NO_INDEX_COLOUR = "#9e9e9e";
  var LAYERS = ["us", "uk", "t", "rh"];
  // Each layer's classes: the cluster counts per class sit side by side in one array (OFFSET[layer] + class).
  var CLASSES = { us: US_SCALE.length, uk: UK_COLOURS.length, t: CLIMATE.t.colours.length, rh: CLIMATE.rh.colours.length };
  var OFFSET = {};
  var TOTAL_CLASSES = 0;
  LAYERS.forEach(function (key) { OFFSET[key] = TOTAL_CLASSES; TOTAL_CLASSES += CLASSES[key]; });
  // Sensors are grouped up to this zoom; from the next one on every sensor is drawn on its own.
  var CLUSTER_MAX_ZOOM = 13;
  var SINGLE_ZOOM = CLUSTER_MAX_ZOOM + 1;
  var CLUSTER_RADIUS_PX = 80;

  function usClass(value) {
    if (value === null || value === undefined) return -1;
    for (var i = 0; i < US_SCALE.length; i++) {
      if (value <= US_SCALE[i].hi) return i;
    }
    return US_SCALE.length - 1;
  }
  function ukClass(value) {
    if (value === null || value === undefined) return -1;
    return Math.min(10, Math.max(1, Math.round(value))) - 1;
  }
  function climateClass(key, value) {
    if (value === null || value === undefined) return -1;
    var bounds = CLIMATE[key].bounds;
    for (var i = bounds.length - 1; i >= 0; i--) {
      if (value >= bounds[i]) return i;
    }
    return 0;
  }
  function classOf(properties, key) {
    if (key === "us") return usClass(properties.us);
    if (key === "uk") return ukClass(properties.uk);
    return climateClass(key, properties[key]);
  }
  function classColour(key, k) {
    if (k < 0) return NO_INDEX_COLOUR;
    if (key === "us") return US_SCALE[k].colour;
    if (key === "uk") return UK_COLOURS[k];
    return CLIMATE[key].colours[k];
  }
  function usColour(value) { return classColour("us", usClass(value)); }
  function ukColour(value) { return classColour("uk", ukClass(value)); }
  function colourFor(properties, key) { return classColour(key, classOf(properties, key)); }

  // The lower median class of a group (the ceil(n/2)-th sensor in scale order; -1 when none has a value): the
  // class of the median value, as every class is a range of values.
  function medianClass(counts, key) {
    var total = 0, i;
    for (i = 0; i < CLASSES[key]; i++) total += counts[OFFSET[key] + i];
    if (!total) return -1;
    var target = Math.ceil(total / 2), seen = 0;
    for (i = 0; i < CLASSES[key]; i++) {
      seen += counts[OFFSET[key] + i];
      if (seen >= target) return i;
    }
    return CLASSES[key] - 1;
  }

  var state = {
    index: "us",
    lang: null,
    texts: null,
    pointer: null,
    data: null,
    byId: new Map(),
    markers: new Map(),
    groups: [],
    features: 0,
    ready: false,
    drawnAtMs: null,
    drawMs: null,
    errors: []
  };
  window.aqiSite = state;
  var catalogues = {};

  // --- texts ---------------------------------------------------------------------------------------------------
  function t(key, values) {
    var text = state.texts.ui[key];
    if (text === undefined) return key;
    return text.replace(/\{(\w+)\}/g, function (whole, name) {
      return values && values[name] !== undefined ? String(values[name]) : whole;
    });
  }
  function indexName(key) { return state.texts.indices[key]; }
  function categoryName(key, category) {
    return (state.texts.categories[key] && state.texts.categories[key][category]) || category;
  }
  function basisText(basis) { return state.texts.ui["basis_" + basis] || basis; }
  function adviceIndex() { return state.index === "uk" ? "uk" : "us"; }

  function chooseLanguage() {
    var asked = new URLSearchParams(location.search).get("lang");
    if (asked && config.i18n[asked]) return asked;
    var preferred = navigator.languages || [navigator.language || ""];
    for (var i = 0; i < preferred.length; i++) {
      var base = String(preferred[i]).toLowerCase().split("-")[0];
      if (config.i18n[base]) return base;
    }
    return config.defaultLang;
  }

  function loadCatalogue(lang) {
    if (catalogues[lang]) return Promise.resolve(catalogues[lang]);
    return fetch(config.i18n[lang]).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status + " for " + config.i18n[lang]);
      return response.json();
    }).then(function (catalogue) { catalogues[lang] = catalogue; return catalogue; });
  }

  function applyTexts() {
    document.documentElement.lang = state.lang;
    var title = config.title || t("title");
    document.title = title;
    document.getElementById("title").textContent = title;
    Array.prototype.forEach.call(document.querySelectorAll("[data-i18n]"), function (node) {
      node.textContent = t(node.getAttribute("data-i18n"));
    });
    Array.prototype.forEach.call(document.querySelectorAll("[data-i18n-placeholder]"), function (node) {
      node.setAttribute("placeholder", t(node.getAttribute("data-i18n-placeholder")));
    });
    Array.prototype.forEach.call(document.querySelectorAll("[data-i18n-aria-label]"), function (node) {
      node.setAttribute("aria-label", t(node.getAttribute("data-i18n-aria-label")));
    });
    var toggle = document.getElementById("panel-toggle");
    toggle.textContent = t(toggle.getAttribute("aria-expanded") === "true" ? "panel_close" : "panel_open");
    var note = document.getElementById("translation-note");
    note.textContent = state.texts.translation_note || "";
    note.hidden = !state.texts.translation_note;
    Array.prototype.forEach.call(document.querySelectorAll("#languages button"), function (button) {
      button.setAttribute("aria-pressed", String(button.value === state.lang));
    });
  }

  function renderLanguageSwitch() {
    var box = document.getElementById("languages");
    box.textContent = "";
    Object.keys(config.languages).forEach(function (lang) {
      var button = el("button", { type: "button", value: lang, lang: lang, "aria-pressed": "false" },
        config.languages[lang]);
      button.addEventListener("click", function () { setLanguage(lang, true); });
      box.appendChild(button);
    });
  }

  function setLanguage(lang, remember) {
    return loadCatalogue(lang).then(function (catalogue) {
      state.lang = lang;
      state.texts = catalogue;
      if (remember) {
        var url = new URL(location.href);
        url.searchParams.set("lang", lang);
        history.replaceState(null, "", url.pathname + url.search + url.hash);
      }
      applyTexts();
      renderLegend();
      if (state.data) {
        basisNote(state.data);
        updateAge();
        renderView();
      }
      if (state.place) showPlace(state.place);
      if (popup.isOpen() && state.openId !== undefined) openSensor(state.openId, { focus: false, move: false });
    });
  }

  // --- the map -------------------------------------------------------------------------------------------------
  var renderer = L.canvas({ padding: 0.5 });
  var phoneLayout = window.matchMedia("(max-width: 700px)");
  var map = L.map("map", { preferCanvas: true, renderer: renderer, minZoom: 2, maxZoom: 18, worldCopyJump: true,
    keyboard: true, zoomControl: false });
  // On a phone the zoom buttons sit at the bottom, clear of the popups (which open above their sensor).
  L.control.zoom({ position: phoneLayout.matches ? "bottomright" : "topleft" }).addTo(map);
  map.setView([50, 10], 4);
  state.map = map;
  if (config.tileUrl) {
    L.tileLayer(config.tileUrl, { maxZoom: 19, attribution: config.tileAttribution }).addTo(map);
  }
  var layer = L.featureGroup().addTo(map);
  state.layer = layer;
  // On a phone the popup keeps clear of the screen's edges (its frame adds about 50 px to the content).
  var popup = L.popup({ minWidth: Math.min(330, window.innerWidth - 80), maxWidth: Math.min(360, window.innerWidth - 80),
    autoPanPadding: [10, 10] });
  var clusters = new Supercluster({
    radius: CLUSTER_RADIUS_PX,
    maxZoom: CLUSTER_MAX_ZOOM,
    map: function (properties) {
      var counts = new Array(TOTAL_CLASSES).fill(0);
      LAYERS.forEach(function (key) {
        var k = classOf(properties, key);
        if (k >= 0) counts[OFFSET[key] + k] = 1;
      });
      return { counts: counts };
    },
    reduce: function (accumulated, properties) {
      // supercluster starts a group from a shallow copy of a member's properties: copy the counts once before
      // adding to them (`owner` tells a group's own array from the one it shares with the member).
      if (accumulated.owner !== accumulated) {
        accumulated.counts = accumulated.counts.slice();
        accumulated.owner = accumulated;
      }
      for (var i = 0; i < TOTAL_CLASSES; i++) accumulated.counts[i] += properties.counts[i];
    }
  });
  state.clusters = clusters;

  function el(tag, attributes, text) {
    var node = document.createElement(tag);
    if (attributes) Object.keys(attributes).forEach(function (k) { node.setAttribute(k, attributes[k]); });
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function formatTime(iso) {
    if (!iso) return "–";
    var d = new Date(iso);
    return d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
  }
  function formatAge(ms) {
    var minutes = Math.round(ms / 60000);
    if (minutes < 1) return t("age_now");
    if (minutes < 120) return t("age_minutes", { n: minutes });
    var hours = Math.round(minutes / 60);
    if (hours < 48) return t("age_hours", { n: hours });
    return t("age_days", { n: Math.round(hours / 24) });
  }
  function pm(value) { return value === null || value === undefined ? "–" : value + " µg/m³"; }
  function climateValue(key, value) {
    return value === null || value === undefined ? "–" : value.toFixed(CLIMATE[key].digits) + CLIMATE[key].unit;
  }
  // The text of a sensor's value on a layer: "18 – Good", "12.5 °C".
  function valueText(properties, key) {
    if (key === "us") return properties.us === null ? t("no_index") : properties.us + " – " + categoryName("us", properties.us_cat);
    if (key === "uk") return properties.uk === null ? t("no_index") : properties.uk + " – " + categoryName("uk", properties.uk_band);
    return properties[key] === null || properties[key] === undefined ? t("no_value") : climateValue(key, properties[key]);
  }
  function classLabel(key, k) {
    if (k < 0) return key === "us" || key === "uk" ? t("no_index") : t("no_value");
    if (key === "us") return categoryName("us", US_SCALE[k].name);
    if (key === "uk") return (k + 1) + " " + categoryName("uk", ukBand(k + 1).name);
    return state.texts.climate_bins[key][k];
  }
  function ukBand(value) {
    return UK_BANDS.filter(function (b) { return value >= b.lo && value <= b.hi; })[0];
  }
  // Black or white, whichever is more legible on `colour` (WCAG contrast).
  function textColourOn(colour) {
    var rgb = [1, 3, 5].map(function (i) {
      var c = parseInt(colour.slice(i, i + 2), 16) / 255;
      return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
    });
    var luminance = 0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2];
    return (luminance + 0.05) / 0.05 >= 1.05 / (luminance + 0.05) ? "#000000" : "#ffffff";
  }

  function markerStyle(properties) {
    return { radius: 5, weight: 1, color: "#333333", opacity: 0.7, fillColor: colourFor(properties, state.index),
      fillOpacity: 1 };
  }

  function groupIcon(item) {
    var count = item.properties.point_count;
    var k = medianClass(item.properties.counts, state.index);
    var colour = classColour(state.index, k);
    var size = count < 10 ? 26 : count < 100 ? 32 : count < 1000 ? 38 : 44;
    var node = el("span", { "class": "group", "data-count": String(count), "data-class": String(k) },
      count >= 1000 ? Math.round(count / 100) / 10 + "k" : count);
    node.style.background = colour;
    node.style.color = textColourOn(colour);
    node.style.width = node.style.height = node.style.lineHeight = size + "px";
    return L.divIcon({ html: node, className: "group-icon", iconSize: [size, size] });
  }

  function groupTitle(item) {
    var category = classLabel(state.index, medianClass(item.properties.counts, state.index));
    return t("group", { count: item.properties.point_count, index: indexName(state.index), category: category });
  }

  // Draw what the view shows: groups of sensors up to CLUSTER_MAX_ZOOM, single sensors beyond (or alone).
  function renderView() {
    if (!state.data) return;
    var bounds = map.getBounds().pad(0.2);
    var zoom = Math.round(map.getZoom());
    var items = clusters.getClusters([bounds.getWest(), Math.max(-90, bounds.getSouth()), bounds.getEast(),
      Math.min(90, bounds.getNorth())], zoom);
    layer.clearLayers();
    state.markers = new Map();
    state.groups = [];
    for (var i = 0; i < items.length; i++) {
      var item = items[i];
      var c = item.geometry.coordinates;
      if (item.properties.cluster) {
        var group = L.marker([c[1], c[0]], { icon: groupIcon(item), keyboard: false, title: groupTitle(item) });
        group.cluster = item;
        layer.addLayer(group);
        state.groups.push(group);
      } else {
        var marker = L.circleMarker([c[1], c[0]], markerStyle(item.properties));
        marker.feature = item;
        layer.addLayer(marker);
        state.markers.set(item.properties.id, marker);
      }
    }
  }
  map.on("moveend", renderView);

  layer.on("click", function (event) {
    var target = event.layer;
    if (target.cluster) {
      var zoom = Math.min(clusters.getClusterExpansionZoom(target.cluster.properties.cluster_id), SINGLE_ZOOM);
      map.setView(target.getLatLng(), zoom);
    } else {
      openSensor(target.feature.properties.id, { focus: false, move: false });
    }
  });

  function draw(geojson) {
    var started = performance.now();
    var features = (geojson.features || []).filter(function (f) { return f.geometry && f.geometry.coordinates; });
    state.byId = new Map();
    features.forEach(function (f) { state.byId.set(f.properties.id, f); });
    clusters.load(features);
    state.features = (geojson.features || []).length;
    var linked = sensorFromHash();
    if (!state.fitted && features.length && !(linked && state.byId.has(linked))) {  // show where the sensors are
      var lats = features.map(function (f) { return f.geometry.coordinates[1]; });
      var lons = features.map(function (f) { return f.geometry.coordinates[0]; });
      map.fitBounds([[Math.min.apply(null, lats), Math.min.apply(null, lons)],
        [Math.max.apply(null, lats), Math.max.apply(null, lons)]], { padding: [10, 10], maxZoom: 12, animate: false });
    }
    renderView();
    if (!state.fitted && linked) openLinkedSensor();
    state.fitted = true;
    requestAnimationFrame(function () {
      requestAnimationFrame(function () {  // the canvas renderer draws on the next frame
        state.drawMs = performance.now() - started;
        state.drawnAtMs = performance.now();
        state.ready = true;
        document.body.setAttribute("data-ready", "true");
      });
    });
  }

  function restyle() {
    renderView();
    renderLegend();
    if (popup.isOpen() && state.openId !== undefined) openSensor(state.openId, { focus: false, move: false });
  }

  // --- legend --------------------------------------------------------------------------------------------------
  function swatch(colour, text) {
    var node = el("span", { "class": "swatch", "aria-hidden": "true" }, text);
    node.style.background = colour;
    if (text !== undefined) node.style.color = textColourOn(colour);
    return node;
  }

  function adviceBlock(key, category, tag) {
    var advice = state.texts.advice[key];
    var texts = advice.categories[category];
    var box = el(tag || "div", { "class": "advice", "data-advice": key + ":" + category });
    var general = el("p", { "data-group": "general" });
    general.appendChild(el("strong", null, advice.general_label + ": "));
    general.appendChild(document.createTextNode(texts.general));
    var sensitive = el("p", { "data-group": "sensitive" });
    sensitive.appendChild(el("strong", null, advice.sensitive_label + ": "));
    sensitive.appendChild(document.createTextNode(texts.sensitive));
    box.appendChild(sensitive);
    box.appendChild(general);
    return box;
  }

  function sourceLine(key) {
    var advice = state.texts.advice[key];
    var line = el("p", { "class": "source" }, t("advice_source", { source: "" }));
    var link = el("a", { href: advice.source_url }, advice.source);
    line.appendChild(link);
    return line;
  }

  function renderLegend() {
    var legend = document.getElementById("legend");
    legend.textContent = "";
    var key = state.index;
    legend.appendChild(el("h2", null, t("legend_title", { index: indexName(key) })));
    var list = el("ul", { "class": "legend" });
    if (key === "us") {
      US_SCALE.forEach(function (band) {
        var item = el("li", { "data-category": band.name });
        var details = el("details");
        var summary = el("summary");
        summary.appendChild(swatch(band.colour));
        summary.appendChild(document.createTextNode(band.lo + "–" + band.hi + " " + categoryName("us", band.name)));
        details.appendChild(summary);
        details.appendChild(adviceBlock("us", band.name));
        item.appendChild(details);
        list.appendChild(item);
      });
    } else if (key === "uk") {
      UK_BANDS.forEach(function (band) {
        var item = el("li", { "data-category": band.name });
        var details = el("details");
        var summary = el("summary");
        for (var v = band.lo; v <= band.hi; v++) summary.appendChild(swatch(UK_COLOURS[v - 1], v));
        summary.appendChild(document.createTextNode(band.lo + (band.hi > band.lo ? "–" + band.hi : "") + " " +
          categoryName("uk", band.name)));
        details.appendChild(summary);
        details.appendChild(adviceBlock("uk", band.name));
        item.appendChild(details);
        list.appendChild(item);
      });
    } else {
      CLIMATE[key].colours.forEach(function (colour, k) {
        var item = el("li");
        item.appendChild(swatch(colour));
        item.appendChild(document.createTextNode(classLabel(key, k)));
        list.appendChild(item);
      });
    }
    var none = el("li");
    none.appendChild(swatch(NO_INDEX_COLOUR));
    none.appendChild(document.createTextNode(classLabel(key, -1)));
    list.appendChild(none);
    legend.appendChild(list);
    legend.appendChild(el("p", { "class": "note" }, t("legend_groups", { index: indexName(key) })));
    if (key === "us" || key === "uk") legend.appendChild(sourceLine(key));
    else legend.appendChild(el("p", { "class": "note" }, t("legend_climate")));
  }

  // --- popup ---------------------------------------------------------------------------------------------------
  function row(list, label, field, value) {
    list.appendChild(el("dt", null, label));
    list.appendChild(el("dd", { "data-field": field }, value));
  }

  function popupContent(feature) {
    var p = feature.properties;
    var box = el("div", { "class": "sensor", tabindex: "-1", "data-sensor": String(p.id), role: "region",
      "aria-label": t("sensor", { id: p.id }) });
    box.appendChild(el("h2", null, t("sensor", { id: p.id })));
    var list = el("dl");
    row(list, t("type"), "type", p.type || "–");
    row(list, t("country"), "country", p.country || "–");
    row(list, t("reading"), "time", formatTime(p.time));
    row(list, "PM2.5", "pm25", pm(p.pm25));
    row(list, "PM10", "pm10", pm(p.pm10));
    row(list, indexName("us"), "us", valueText(p, "us"));
    list.appendChild(el("dd", { "class": "basis", "data-field": "us_basis" }, basisText(p.us_basis)));
    row(list, indexName("uk"), "uk", valueText(p, "uk"));
    list.appendChild(el("dd", { "class": "basis", "data-field": "uk_basis" }, basisText(p.uk_basis)));
    row(list, t("temperature"), "t", climateValue("t", p.t));
    row(list, t("humidity"), "rh", climateValue("rh", p.rh));
    box.appendChild(list);
    var key = adviceIndex();
    var category = key === "us" ? p.us_cat : p.uk_band;
    var advice = el("section", { "class": "advice-box", "data-field": "advice" });
    if ((key === "us" ? p.us : p.uk) === null || !state.texts.advice[key].categories[category]) {
      advice.appendChild(el("p", null, t("advice_none")));
    } else {
      advice.appendChild(el("h3", null, t("advice_title", { index: indexName(key), category: categoryName(key, category) })));
      advice.appendChild(adviceBlock(key, category));
      advice.appendChild(sourceLine(key));
    }
    box.appendChild(advice);
    var chart = el("figure", { "class": "chart", "data-field": "chart" });
    chart.appendChild(el("figcaption", null, t("chart_loading")));
    box.appendChild(chart);
    box.appendChild(el("a", { href: "#sensor=" + p.id, "class": "sensor-link" }, t("sensor_link")));
    loadHistory(p.id, chart, false);
    return box;
  }

  // Open a sensor's popup. move: centre the map there at a zoom that draws single sensors; focus: move the
  // keyboard focus into the popup.
  function openSensor(id, options) {
    var feature = state.byId.get(id);
    if (!feature) return false;
    var c = feature.geometry.coordinates;
    var latlng = L.latLng(c[1], c[0]);
    if (options.move) map.setView(latlng, Math.max(map.getZoom(), SINGLE_ZOOM), { animate: false });
    state.openId = id;
    popup.setLatLng(latlng).setContent(popupContent(feature));
    popup.openOn(map);
    if (location.hash !== "#sensor=" + id) history.replaceState(null, "", location.pathname + location.search + "#sensor=" + id);
    if (options.focus) {
      var box = popup.getElement() && popup.getElement().querySelector(".sensor");
      if (box) box.focus();
    }
    return true;
  }
  map.on("popupclose", function () {
    state.openId = undefined;
    if (location.hash) history.replaceState(null, "", location.pathname + location.search);
  });

  function sensorFromHash() {
    var match = /^#sensor=(\d+)$/.exec(location.hash);
    return match ? Number(match[1]) : null;
  }
  function openLinkedSensor() {
    var id = sensorFromHash();
    if (id === null || id === state.openId) return;
    if (!openSensor(id, { focus: true, move: true })) {
      document.getElementById("find-result").textContent = t("find_none", { id: id });
    }
  }
  window.addEventListener("hashchange", function () { if (state.data) openLinkedSensor(); });

  // The histories come in `history_shards` files: sensor `id` is in file `id % history_shards`.
  function loadHistory(id, figure, retried) {
    var url = state.pointer.history + String(Number(id) % state.pointer.history_shards) + ".json";
    fetch(url).then(function (response) {
      if (response.status === 404 && !retried) {  // an old build was cleaned up: re-read the pointer once
        return loadPointer().then(function () { loadHistory(id, figure, true); return null; });
      }
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    }).then(function (shard) {
      if (!shard) return;
      var lists = Object.prototype.hasOwnProperty.call(shard.sensors, String(id)) ? shard.sensors[String(id)] : null;
      if (!lists) throw new Error("sensor " + id + " is not in its history file");
      drawChart(figure, {
        start: shard.start, step_s: shard.step_s, us_basis: shard.us_basis, uk_basis: shard.uk_basis,
        pm25: lists.pm25, pm10: lists.pm10, us: lists.us, uk: lists.uk
      });
    }).catch(function (error) {
      figure.textContent = "";
      figure.appendChild(el("figcaption", null, t("chart_unavailable", { error: error.message })));
    });
  }

  var SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attributes, text) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attributes || {}).forEach(function (k) { node.setAttribute(k, attributes[k]); });
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function drawChart(figure, history) {
    var width = 320, height = 130, left = 34, right = 6, top = 8, bottom = 30, strip = 8;
    var n = history.pm25.length;
    var values = history.pm25.concat(history.pm10).filter(function (v) { return v !== null; });
    figure.textContent = "";
    if (!values.length) {
      figure.appendChild(el("figcaption", null, t("chart_empty")));
      return;
    }
    var max = Math.max(10, Math.max.apply(null, values));
    var plotW = width - left - right, plotH = height - top - bottom - strip - 4;
    var x = function (i) { return left + (n <= 1 ? 0 : (i / (n - 1)) * plotW); };
    var y = function (v) { return top + plotH - (v / max) * plotH; };
    var chart = svg("svg", { viewBox: "0 0 " + width + " " + height, width: width, height: height, role: "img" });
    chart.appendChild(svg("title", {}, t("chart_title", { max: max })));
    chart.appendChild(svg("line", { x1: left, y1: top + plotH, x2: left + plotW, y2: top + plotH, "class": "axis" }));
    chart.appendChild(svg("line", { x1: left, y1: top, x2: left, y2: top + plotH, "class": "axis" }));
    chart.appendChild(svg("text", { x: left - 3, y: top + 8, "text-anchor": "end", "class": "tick" }, Math.round(max)));
    chart.appendChild(svg("text", { x: left - 3, y: top + plotH, "text-anchor": "end", "class": "tick" }, "0"));
    [["pm10", "pm10-line"], ["pm25", "pm25-line"]].forEach(function (pair) {
      var d = "", pen = false;
      history[pair[0]].forEach(function (v, i) {
        if (v === null) { pen = false; return; }
        d += (pen ? "L" : "M") + x(i).toFixed(1) + " " + y(v).toFixed(1);
        pen = true;
      });
      if (d) chart.appendChild(svg("path", { d: d, "class": pair[1], fill: "none" }));
    });
    var key = adviceIndex();
    var stripY = top + plotH + 4;
    var cell = plotW / Math.max(1, n);
    history[key].forEach(function (v, i) {
      if (v === null) return;
      chart.appendChild(svg("rect", { x: (left + i * cell).toFixed(1), y: stripY, width: Math.max(1, cell).toFixed(2),
        height: strip, fill: key === "uk" ? ukColour(v) : usColour(v) }));
    });
    var start = new Date(history.start);
    var end = new Date(start.getTime() + n * history.step_s * 1000);
    chart.appendChild(svg("text", { x: left, y: height - 4, "class": "tick" }, start.toISOString().slice(5, 10)));
    chart.appendChild(svg("text", { x: left + plotW, y: height - 4, "text-anchor": "end", "class": "tick" },
      end.toISOString().slice(5, 10)));
    figure.appendChild(chart);
    var lastIndex = -1;
    for (var i = n - 1; i >= 0; i--) { if (history.pm25[i] !== null || history.pm10[i] !== null) { lastIndex = i; break; } }
    var caption = t("chart_caption", { index: indexName(key), basis: basisText(history[key + "_basis"]) });
    if (lastIndex >= 0) {
      caption += " " + t("chart_last_hour", { pm25: pm(history.pm25[lastIndex]), pm10: pm(history.pm10[lastIndex]) });
    }
    figure.appendChild(el("figcaption", null, caption));
    figure.setAttribute("data-hours", String(values.length ? n : 0));
  }

  // --- find a sensor or a place --------------------------------------------------------------------------------
  var places = [];
  function normalise(text) {
    return text.toLowerCase().normalize("NFD").replace(/[\u0300-\u036f]/g, "").replace(/ß/g, "ss").trim();
  }
  function findPlace(text) {
    var wanted = normalise(text);
    var exact = places.filter(function (p) { return normalise(p.en) === wanted || normalise(p.de) === wanted; })[0];
    return exact || places.filter(function (p) {
      return normalise(p.en).indexOf(wanted) === 0 || normalise(p.de).indexOf(wanted) === 0;
    })[0];
  }
  function distanceKm(lat1, lon1, lat2, lon2) {
    var rad = Math.PI / 180, dLat = (lat2 - lat1) * rad, dLon = (lon2 - lon1) * rad;
    var a = Math.sin(dLat / 2) * Math.sin(dLat / 2) +
      Math.cos(lat1 * rad) * Math.cos(lat2 * rad) * Math.sin(dLon / 2) * Math.sin(dLon / 2);
    return 12742 * Math.asin(Math.sqrt(a));
  }

  // The place's nearest sensors as a list of buttons (the keyboard route to a sensor without knowing its id).
  function showPlace(place) {
    state.place = place;
    var list = document.getElementById("place-sensors");
    list.textContent = "";
    var nearest = [];
    state.byId.forEach(function (f) {
      var c = f.geometry.coordinates;
      nearest.push({ f: f, km: distanceKm(place.lat, place.lon, c[1], c[0]) });
    });
    nearest.sort(function (a, b) { return a.km - b.km; });
    nearest = nearest.slice(0, 8);
    document.getElementById("find-result").textContent = t("place_near", { place: place[state.lang] || place.en });
    nearest.forEach(function (entry) {
      var p = entry.f.properties;
      var button = el("button", { type: "button", "data-sensor": String(p.id) },
        t("place_item", { id: p.id, distance: Math.round(entry.km), value: valueText(p, adviceIndex()) }));
      button.addEventListener("click", function () { chooseSensor(p.id); });
      var item = el("li");
      item.appendChild(button);
      list.appendChild(item);
    });
    list.hidden = !nearest.length;
    return nearest;
  }

  function chooseSensor(id) {
    if (phoneLayout.matches) setPanel(false, false);  // on a phone the panel covers the map
    openSensor(id, { focus: true, move: true });
  }

  document.getElementById("find").addEventListener("submit", function (event) {
    event.preventDefault();
    var text = document.getElementById("find-id").value.trim();
    var result = document.getElementById("find-result");
    var list = document.getElementById("place-sensors");
    state.place = null;
    list.hidden = true;
    list.textContent = "";
    if (!text) { result.textContent = t("find_empty"); return; }
    if (/^\d+$/.test(text)) {
      var id = Number(text);
      if (!state.byId.has(id)) { result.textContent = t("find_none", { id: text }); return; }
      result.textContent = t("find_shown", { id: id });
      chooseSensor(id);
      return;
    }
    var place = findPlace(text);
    if (!place) { result.textContent = t("find_no_place", { text: text }); return; }
    map.setView([place.lat, place.lon], 11, { animate: false });
    var nearest = showPlace(place);
    if (nearest.length) list.querySelector("button").focus();
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && popup.isOpen()) {
      map.closePopup(popup);
      if (phoneLayout.matches) setPanel(true, false);
      document.getElementById("find-id").focus();
    }
  });

  // --- the panel on a phone ------------------------------------------------------------------------------------
  function setPanel(open, focus) {
    var toggle = document.getElementById("panel-toggle");
    toggle.setAttribute("aria-expanded", String(open));
    document.body.classList.toggle("panel-open", open);
    toggle.textContent = t(open ? "panel_close" : "panel_open");
    if (open && focus) document.getElementById("find-id").focus();
    map.invalidateSize();
  }
  document.getElementById("panel-toggle").addEventListener("click", function () {
    setPanel(document.getElementById("panel-toggle").getAttribute("aria-expanded") !== "true", true);
  });

  // --- index choice --------------------------------------------------------------------------------------------
  Array.prototype.forEach.call(document.querySelectorAll("input[name=index]"), function (input) {
    input.addEventListener("change", function () {
      if (!input.checked) return;
      state.index = input.value;
      restyle();
    });
  });

  // --- data age ------------------------------------------------------------------------------------------------
  function updateAge() {
    var status = document.getElementById("status");
    var stale = document.getElementById("stale");
    if (!state.pointer || !state.texts) return;
    if (!state.pointer.data_time) {
      status.textContent = t("status_none");
      return;
    }
    var age = Date.now() - Date.parse(state.pointer.data_time);
    status.textContent = t("status", { n: state.features, time: formatTime(state.pointer.data_time),
      age: formatAge(Math.max(0, age)) });
    if (age > config.staleAfterS * 1000) {
      stale.textContent = t("stale", { age: formatAge(age), minutes: Math.round(config.staleAfterS / 60) });
      stale.hidden = false;
    } else {
      stale.hidden = true;
      stale.textContent = "";
    }
  }

  function basisNote(geojson) {
    var counts = { us: {}, uk: {} };
    (geojson.features || []).forEach(function (f) {
      counts.us[f.properties.us_basis] = (counts.us[f.properties.us_basis] || 0) + 1;
      counts.uk[f.properties.uk_basis] = (counts.uk[f.properties.uk_basis] || 0) + 1;
    });
    var parts = [];
    ["us", "uk"].forEach(function (k) {
      Object.keys(counts[k]).forEach(function (basis) {
        parts.push(t("basis_note_item", { index: indexName(k), n: counts[k][basis], basis: basisText(basis) }));
      });
    });
    document.getElementById("basis-note").textContent = parts.join("; ") + ".";
  }

  // --- countries -----------------------------------------------------------------------------------------------
  document.getElementById("countries").addEventListener("toggle", function (event) {
    if (!event.target.open || !state.pointer) return;
    fetch(state.pointer.countries).then(function (r) { return r.json(); }).then(function (summary) {
      var body = document.querySelector("#countries tbody");
      body.textContent = "";
      summary.countries.forEach(function (c) {
        var tr = el("tr");
        [c.country, c.sensors, pm(c.pm25_median), pm(c.pm10_median),
          c.worst_sensor ? t("worst_cell", { us: c.worst_sensor.us, id: c.worst_sensor.id }) : "–"].forEach(function (v) {
          tr.appendChild(el("td", null, v));
        });
        body.appendChild(tr);
      });
    });
  });

  // --- loading -------------------------------------------------------------------------------------------------
  function loadPointer() {
    return fetch(config.pointer, { cache: "no-cache" }).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status + " for " + config.pointer);
      return response.json();
    }).then(function (pointer) {
      var changed = !state.pointer || state.pointer.latest !== pointer.latest;
      state.pointer = pointer;
      return changed;
    });
  }

  function fetchLatest() {
    return fetch(state.pointer.latest).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status + " for " + state.pointer.latest);
      return response.json();
    });
  }
  function showData(geojson) {
    state.data = geojson;
    draw(geojson);
    basisNote(geojson);
    updateAge();
  }
  function loadData() { return fetchLatest().then(showData); }

  function refresh() {
    loadPointer().then(function (changed) { return changed ? loadData() : updateAge(); }).catch(function (error) {
      state.errors.push(String(error));
    });
  }

  function loadPlaces() {
    return fetch(config.places).then(function (r) { return r.json(); }).then(function (data) { places = data.places; })
      .catch(function (error) { state.errors.push(String(error)); });
  }

  renderLanguageSwitch();
  // The texts, the pointer and the map data load side by side; the map is drawn once the texts are there.
  var dataLoaded = loadPointer().then(fetchLatest);
  setLanguage(chooseLanguage(), false).then(function () {
    loadPlaces();
    return dataLoaded;
  }).then(showData).catch(function (error) {
    state.errors.push(String(error));
    var status = document.getElementById("status");
    status.textContent = state.texts ? t("load_failed", { error: error.message }) : String(error);
  });
  setInterval(updateAge, 30000);
  setInterval(refresh, Math.max(15, config.refreshS) * 1000);
})();

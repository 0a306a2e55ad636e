/* The public air-quality map. Plain JavaScript over Leaflet (vendored); every text from the data goes in through
 * textContent or SVG text nodes, never as HTML. window.aqiSite exposes the state for the browser tests. */
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
  var NO_INDEX_COLOUR = "#9e9e9e";
  var BASIS_TEXT = {
    nowcast: "NowCast from hourly means (official method)",
    "24h": "24-hour running mean (official method)",
    reading: "one 5-minute reading (indicative only)"
  };
  var INDEX_NAMES = { us: "US AQI", uk: "UK DAQI" };

  function usColour(value) {
    if (value === null || value === undefined) return NO_INDEX_COLOUR;
    for (var i = 0; i < US_SCALE.length; i++) {
      if (value <= US_SCALE[i].hi) return US_SCALE[i].colour;
    }
    return US_SCALE[US_SCALE.length - 1].colour;
  }
  function ukColour(value) {
    if (value === null || value === undefined) return NO_INDEX_COLOUR;
    return UK_COLOURS[Math.min(10, Math.max(1, Math.round(value))) - 1];
  }
  function colourFor(properties, index) {
    return index === "uk" ? ukColour(properties.uk) : usColour(properties.us);
  }

  var state = {
    index: "us",
    pointer: null,
    data: null,
    markers: new Map(),
    features: 0,
    ready: false,
    drawnAtMs: null,
    drawMs: null,
    errors: []
  };
  window.aqiSite = state;

  // --- the map -------------------------------------------------------------------------------------------------
  var renderer = L.canvas({ padding: 0.5 });
  var map = L.map("map", { preferCanvas: true, renderer: renderer, minZoom: 2, maxZoom: 18, worldCopyJump: true,
    keyboard: true });
  map.setView([50, 10], 4);
  state.map = map;
  if (config.tileUrl) {
    L.tileLayer(config.tileUrl, { maxZoom: 19, attribution: config.tileAttribution }).addTo(map);
  }
  var layer = L.featureGroup().addTo(map);
  state.layer = layer;
  var popup = L.popup({ minWidth: 330, maxWidth: 360, autoPanPadding: [20, 20] });

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
    if (minutes < 1) return "less than a minute";
    if (minutes < 120) return minutes + " min";
    var hours = Math.round(minutes / 60);
    if (hours < 48) return hours + " hours";
    return Math.round(hours / 24) + " days";
  }
  function pm(value) { return value === null || value === undefined ? "–" : value + " µg/m³"; }

  function markerStyle(properties) {
    return { radius: 5, weight: 1, color: "#333333", opacity: 0.7, fillColor: colourFor(properties, state.index),
      fillOpacity: 1 };
  }

  function draw(geojson) {
    var started = performance.now();
    layer.clearLayers();
    state.markers = new Map();
    var features = geojson.features || [];
    for (var i = 0; i < features.length; i++) {
      var f = features[i];
      var c = f.geometry && f.geometry.coordinates;
      if (!c) continue;
      var marker = L.circleMarker([c[1], c[0]], markerStyle(f.properties));
      marker.feature = f;
      layer.addLayer(marker);
      state.markers.set(f.properties.id, marker);
    }
    state.features = features.length;
    if (!state.fitted && features.length) {  // the first data: show where the sensors are
      map.fitBounds(layer.getBounds(), { padding: [10, 10], maxZoom: 12, animate: false });
      state.fitted = true;
    }
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
    state.markers.forEach(function (marker) {
      marker.setStyle({ fillColor: colourFor(marker.feature.properties, state.index) });
    });
    renderLegend();
    if (popup.isOpen() && state.openMarker) openPopup(state.openMarker, false);
  }

  // --- legend --------------------------------------------------------------------------------------------------
  function renderLegend() {
    var legend = document.getElementById("legend");
    legend.textContent = "";
    legend.appendChild(el("h2", null, INDEX_NAMES[state.index] + " colours"));
    var list = el("ul", { "class": "legend" });
    var rows = state.index === "us"
      ? US_SCALE.map(function (b) { return { colour: b.colour, text: b.lo + "–" + b.hi + " " + b.name }; })
      : UK_COLOURS.map(function (colour, i) {
        var band = UK_BANDS.filter(function (b) { return i + 1 >= b.lo && i + 1 <= b.hi; })[0];
        return { colour: colour, text: (i + 1) + " " + band.name };
      });
    rows.push({ colour: NO_INDEX_COLOUR, text: "no index" });
    rows.forEach(function (row) {
      var item = el("li");
      var swatch = el("span", { "class": "swatch", "aria-hidden": "true" });
      swatch.style.background = row.colour;
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(row.text));
      list.appendChild(item);
    });
    legend.appendChild(list);
  }

  // --- popup ---------------------------------------------------------------------------------------------------
  function row(list, label, field, value) {
    list.appendChild(el("dt", null, label));
    list.appendChild(el("dd", { "data-field": field }, value));
  }

  function popupContent(marker) {
    var p = marker.feature.properties;
    var box = el("div", { "class": "sensor", tabindex: "-1", "data-sensor": String(p.id) });
    box.appendChild(el("h2", null, "Sensor " + p.id));
    var list = el("dl");
    row(list, "Type", "type", p.type || "–");
    row(list, "Country", "country", p.country || "–");
    row(list, "Reading", "time", formatTime(p.time));
    row(list, "PM2.5", "pm25", pm(p.pm25));
    row(list, "PM10", "pm10", pm(p.pm10));
    row(list, "US AQI", "us", p.us === null ? "no index" : p.us + " – " + (p.us_cat || ""));
    list.appendChild(el("dd", { "class": "basis", "data-field": "us_basis" }, BASIS_TEXT[p.us_basis] || p.us_basis));
    row(list, "UK DAQI", "uk", p.uk === null ? "no index" : p.uk + " – " + (p.uk_band || ""));
    list.appendChild(el("dd", { "class": "basis", "data-field": "uk_basis" }, BASIS_TEXT[p.uk_basis] || p.uk_basis));
    box.appendChild(list);
    var chart = el("figure", { "class": "chart", "data-field": "chart" });
    chart.appendChild(el("figcaption", null, "Last 7 days, hourly means: loading…"));
    box.appendChild(chart);
    loadHistory(p.id, chart, false);
    return box;
  }

  function openPopup(marker, focus) {
    popup.setLatLng(marker.getLatLng()).setContent(popupContent(marker));
    state.openMarker = marker;
    popup.openOn(map);
    if (focus) {
      var box = popup.getElement() && popup.getElement().querySelector(".sensor");
      if (box) box.focus();
    }
  }
  layer.on("click", function (event) { openPopup(event.layer, false); });

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
      figure.appendChild(el("figcaption", null, "7-day history not available (" + error.message + ")"));
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
      figure.appendChild(el("figcaption", null, "No complete hour in the last 7 days."));
      return;
    }
    var max = Math.max(10, Math.max.apply(null, values));
    var plotW = width - left - right, plotH = height - top - bottom - strip - 4;
    var x = function (i) { return left + (n <= 1 ? 0 : (i / (n - 1)) * plotW); };
    var y = function (v) { return top + plotH - (v / max) * plotH; };
    var chart = svg("svg", { viewBox: "0 0 " + width + " " + height, width: width, height: height, role: "img" });
    chart.appendChild(svg("title", {}, "PM2.5 and PM10 hourly means, last 7 days, maximum " + max + " µg/m³"));
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
    var key = state.index;
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
    var basis = history[key + "_basis"];
    var legendText = "Hourly means of the last 7 days: PM2.5 (solid), PM10 (dashed), µg/m³. Strip: " +
      INDEX_NAMES[key] + " on " + (BASIS_TEXT[basis] || basis) + ".";
    if (lastIndex >= 0) {
      legendText += " Last hour: PM2.5 " + pm(history.pm25[lastIndex]) + ", PM10 " + pm(history.pm10[lastIndex]) + ".";
    }
    figure.appendChild(el("figcaption", null, legendText));
    figure.setAttribute("data-hours", String(values.length ? n : 0));
  }

  // --- find a sensor -------------------------------------------------------------------------------------------
  document.getElementById("find").addEventListener("submit", function (event) {
    event.preventDefault();
    var text = document.getElementById("find-id").value.trim();
    var result = document.getElementById("find-result");
    var id = Number(text);
    var marker = /^\d+$/.test(text) ? state.markers.get(id) : undefined;
    if (!marker) {
      result.textContent = text ? "No outdoor sensor " + text + " on the map." : "Type a sensor id.";
      return;
    }
    result.textContent = "Sensor " + id + " shown.";
    map.setView(marker.getLatLng(), Math.max(map.getZoom(), 13), { animate: false });
    openPopup(marker, true);
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && popup.isOpen()) {
      map.closePopup(popup);
      document.getElementById("find-id").focus();
    }
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
    if (!state.pointer) return;
    if (!state.pointer.data_time) {
      status.textContent = "No readings yet.";
      return;
    }
    var age = Date.now() - Date.parse(state.pointer.data_time);
    status.textContent = state.features + " outdoor sensors · data of " + formatTime(state.pointer.data_time) +
      " (" + formatAge(Math.max(0, age)) + " ago)";
    if (age > config.staleAfterS * 1000) {
      stale.textContent = "Warning: these data are " + formatAge(age) + " old (more than " +
        Math.round(config.staleAfterS / 60) + " minutes): the map may not show the air quality now.";
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
        parts.push(INDEX_NAMES[k] + ": " + counts[k][basis] + " sensors on " + (BASIS_TEXT[basis] || basis));
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
          c.worst_sensor ? c.worst_sensor.us + " (sensor " + c.worst_sensor.id + ")" : "–"].forEach(function (v) {
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

  function loadData() {
    return fetch(state.pointer.latest).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status + " for " + state.pointer.latest);
      return response.json();
    }).then(function (geojson) {
      state.data = geojson;
      draw(geojson);
      basisNote(geojson);
      updateAge();
    });
  }

  function refresh() {
    loadPointer().then(function (changed) { return changed ? loadData() : updateAge(); }).catch(function (error) {
      state.errors.push(String(error));
    });
  }

  renderLegend();
  loadPointer().then(loadData).catch(function (error) {
    state.errors.push(String(error));
    document.getElementById("status").textContent = "The map data could not be loaded: " + error.message;
  });
  setInterval(updateAge, 30000);
  setInterval(refresh, Math.max(15, config.refreshS) * 1000);
})();

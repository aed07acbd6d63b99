// The console's only script: the sales page's live view. It reads /console/live.json
// every few seconds and writes numbers into the page with textContent only, so nothing
// a client wrote is ever parsed as HTML. Rates come from two readings in a row.
"use strict";

(function () {
  const live = document.getElementById("live");
  if (!live) {
    return;
  }
  const source = live.dataset.source;
  const every = 1000 * Number(live.dataset.refreshSeconds || 2);
  let last = null;

  function show(id, value) {
    const element = document.getElementById(id);
    if (element) {
      element.textContent = String(value);
    }
  }

  function rate(now, before, seconds) {
    return seconds > 0 ? ((now - before) / seconds).toFixed(1) : "…";
  }

  function sum(values) {
    return Object.values(values).reduce((a, b) => a + b, 0);
  }

  function update(reading) {
    if (last !== null) {
      const seconds = reading.at - last.at;
      show("claims-rate", rate(reading.claimed, last.claimed, seconds));
      show("unavailable-rate", rate(reading.unavailable, last.unavailable, seconds));
      show("refused-rate", rate(sum(reading.refused), sum(last.refused), seconds));
      for (const reason of Object.keys(reading.refused)) {
        const before = last.refused[reason] || 0;
        show("refused-" + reason + "-rate", rate(reading.refused[reason], before, seconds));
      }
    }
    show("claimed-total", reading.claimed);
    show("unavailable-total", reading.unavailable);
    for (const reason of Object.keys(reading.refused)) {
      show("refused-" + reason, reading.refused[reason]);
    }
    show("parked-total", reading.parked === null ? "?" : reading.parked);
    show("stuck-total", reading.stuck === null ? "?" : reading.stuck);
    const rows = new Map();
    for (const row of document.querySelectorAll("#coupons tbody tr[data-name]")) {
      rows.set(row.dataset.name, row);
    }
    for (const coupon of reading.coupons) {
      const row = rows.get(coupon.name);
      if (!row) {
        continue; // a coupon created since the page was drawn: on the next load
      }
      for (const cell of row.querySelectorAll("[data-field]")) {
        const value = coupon[cell.dataset.field];
        const text = value === null ? "MongoDB unavailable" : String(value);
        const target = cell.querySelector("a") || cell;
        target.textContent = text;
      }
    }
    const away = Object.keys(reading.stores_away);
    const state = "read at " + new Date(reading.at * 1000).toISOString();
    show("live-state", away.length ? state + "; not answering: " + away.join(", ") : state);
    last = reading;
  }

  async function poll() {
    try {
      const answer = await fetch(source, {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      if (answer.ok) {
        update(await answer.json());
      } else {
        show("live-state", "the gateway answered " + answer.status);
      }
    } catch (error) {
      show("live-state", "the gateway did not answer");
    }
    window.setTimeout(poll, every);
  }

  poll();
})();

// The demo storefront: every call goes to the platform's public API, as a shop's front end makes it.
"use strict";

const demo = JSON.parse(document.getElementById("demo-context").textContent);
const session = "demo-" + Math.random().toString(36).slice(2, 10);
const state = { query: "", filters: {}, product: null };
const $ = (id) => document.getElementById(id);

async function api(method, path, { body, key = "public", params } = {}) {
  // One API call with the demo's public (browser) or server (shop back end) key, logged at the bottom.
  const url = demo.api + path + (params ? "?" + new URLSearchParams(params) : "");
  const started = performance.now();
  const response = await fetch(url, {
    method,
    headers: { "X-Api-Key": demo.keys[key], "Content-Type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  const line = document.createElement("li");
  line.textContent = `${method} ${url} → ${response.status} (${Math.round(performance.now() - started)} ms)`;
  line.className = response.ok ? "" : "error";
  $("api-log").prepend(line);
  return response.ok ? response.json() : null;
}

function item(text, extra, onClick) {
  const li = document.createElement("li");
  li.textContent = text;
  if (extra) {
    const span = document.createElement("span");
    span.className = extra.className;
    span.textContent = extra.text;
    li.append(span);
  }
  li.addEventListener("click", onClick);
  return li;
}

function price(value) {
  return value === null || value === undefined ? null : { className: "price", text: "$" + value };
}

// --- search with suggestions and facets --------------------------------------------------------

let suggestTimer = null;
$("search-input").addEventListener("input", () => {
  clearTimeout(suggestTimer);
  const q = $("search-input").value.trim();
  if (!q) return ($("suggestions").hidden = true);
  suggestTimer = setTimeout(() => suggest(q), 150);
});

async function suggest(q) {
  const answer = await api("GET", "/search/suggest", { params: { q, limit: 6 } });
  const list = $("suggestions");
  list.replaceChildren();
  for (const s of answer ? answer.suggestions : []) {
    list.append(item(s.text, { className: "reason", text: s.kind }, () => {
      $("search-input").value = s.text;
      list.hidden = true;
      search(s.text, {});
    }));
  }
  list.hidden = !list.children.length;
}

$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  $("suggestions").hidden = true;
  search($("search-input").value.trim(), {});
});

async function search(q, filters) {
  if (!q) return;
  state.query = q;
  state.filters = filters;
  const answer = await api("GET", "/search", { params: { q, session, page_size: 10, ...filters } });
  if (!answer) return;
  const corrected = answer.corrected ? ` (showing results for “${answer.corrected}”)` : "";
  $("search-summary").textContent = `${answer.total} results for “${answer.query}”${corrected}, ranked by ${answer.ranker}`;
  $("results").replaceChildren(
    ...answer.results.map((hit, i) =>
      item(hit.title, price(hit.price), () => openFromSearch(answer.search_id, hit, i + 1)),
    ),
  );
  renderFacets(answer.facets);
  showAds({ query: q });
}

function renderFacets(facets) {
  const box = $("facets");
  box.replaceChildren();
  for (const [name, values] of [["category", facets.category], ["brand", facets.brand]]) {
    if (!values.length) continue;
    const heading = document.createElement("h4");
    heading.textContent = name;
    box.append(heading);
    for (const v of values.slice(0, 8)) {
      const link = document.createElement("a");
      const selected = state.filters[name] === v.value;
      link.textContent = `${v.value || "(none)"} (${v.count})`;
      link.className = selected ? "selected" : "";
      link.addEventListener("click", () => {
        const filters = { ...state.filters };
        if (selected) delete filters[name];
        else filters[name] = v.value;
        search(state.query, filters);
      });
      box.append(link);
    }
  }
}

async function openFromSearch(searchId, hit, position) {
  if (searchId) await api("POST", "/search/clicks", { body: { search_id: searchId, sku: hit.sku, position } });
  openProduct(hit);
}

// --- a product page: similar and bought together ------------------------------------------------

async function openProduct(product) {
  state.product = product;
  $("product").hidden = false;
  $("product-title").textContent = product.title;
  $("product-meta").textContent = [product.category_path, product.price ? "$" + product.price : ""].filter(Boolean).join(" · ");
  const sku = encodeURIComponent(product.sku);
  for (const [id, path] of [["similar", "similar"], ["bought-together", "bought-together"]]) {
    const answer = await api("GET", `/recommend/products/${sku}/${path}`, { params: { k: 6 } });
    renderRecommendations($(id), answer);
  }
  showAds({ product: product.sku });
}

function renderRecommendations(list, answer) {
  const items = answer ? answer.items : [];
  list.replaceChildren(
    ...items.map((rec) => item(rec.title, { className: "reason", text: rec.reason }, () => openRecommended(answer.rec_id, rec))),
  );
  if (!items.length) list.append(item("(nothing yet)", null, () => {}));
}

async function openRecommended(recId, rec) {
  // The shop's back end reports the click as an event that echoes the answer's rec_id.
  const event = {
    client_event_id: `${session}-${Date.now()}`,
    customer: $("for-you-customer").value.trim() || null,
    product: rec.sku,
    type: "click",
    rec_id: recId,
    session,
    timestamp: new Date().toISOString(),
  };
  await api("POST", "/events", { body: { events: [event] }, key: "server" });
  openProduct(rec);
}

// --- for you --------------------------------------------------------------------------------------

$("for-you-load").addEventListener("click", async () => {
  const customer = $("for-you-customer").value.trim();
  if (!customer) return;
  const answer = await api("GET", `/recommend/customers/${encodeURIComponent(customer)}`, { params: { k: 8 }, key: "server" });
  const notes = [];
  if (answer && answer.fallback) notes.push(`popular items (${answer.fallback.replaceAll("_", " ")})`);
  if (answer && answer.arm) notes.push(`A/B test arm ${answer.arm}`);
  $("for-you-note").textContent = notes.join(" · ");
  renderRecommendations($("for-you"), answer);
});

// --- chat -----------------------------------------------------------------------------------------

$("chat-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("chat-input").value.trim();
  if (!text) return;
  $("chat-input").value = "";
  $("chat-log").append(Object.assign(document.createElement("li"), { className: "me", textContent: text }));
  const answer = await api("POST", "/chat/messages", { body: { text, session } });
  const reply = answer
    ? `${answer.answer || "(no answer text)"} — ${answer.intent || "out of scope"}, ${Math.round(answer.confidence * 100)}%`
    : "(the assistant is unavailable)";
  $("chat-log").append(Object.assign(document.createElement("li"), { className: "bot", textContent: reply }));
});

// --- the ad slot ----------------------------------------------------------------------------------

async function showAds(context) {
  const box = $("ad-slot");
  if (!demo.slot) return (box.textContent = "No active ad slot: add one (and a campaign) in the admin.");
  $("ad-slot-name").textContent = `slot ${demo.slot}`;
  const answer = await api("POST", "/ads/select", { body: { slot: demo.slot, context, k: 1 } });
  const ad = answer && answer.ads[0];
  box.replaceChildren();
  if (!ad) return (box.textContent = "(no ad for this context)");
  const scored = `pCTR ${(ad.pctr * 100).toFixed(2)}% by ${answer.model}${answer.arm ? ` (arm ${answer.arm})` : ""}`;
  box.append(item(`${ad.title} — ${ad.text}`, { className: "reason", text: scored }, async () => {
    const click = await api("POST", "/ads/clicks", { body: { token: ad.token } });
    box.dataset.clicked = click ? "yes" : "no";
    box.append(Object.assign(document.createElement("div"), { className: "note", textContent: click ? "click recorded" : "click refused" }));
  }));
}

showAds({});

/* verify web widget: <div data-verify-site-key="pk_..."> inside a form becomes a phone verification step.
   No dependencies. On approval the form gets a hidden input verify_token and the div fires "verify:approved".
   Attributes (data-verify-...): channel sms|voice|telegram|call|choice or a list (sms,voice,call), country, locale, url. */
(() => {
  "use strict";
  const me = document.currentScript;
  // Read now: currentScript is null once the script has run.
  const ORIGIN = me && me.src ? new URL(me.src, location.href).origin : location.origin;
  const POLL_MS = 2000;
  const TIMEOUT_MS = 20000;
  // English is built in; GET /widget/<lang>.json has the others, and the regions numbers are read in.
  const LANGS = "en ru uk kk uz de fr es pt it tr ar hi id zh ja".split(" ");
  // The country of a plain browser language (ru) with one home (not en, es, pt, ar).
  const HOME = { ru: "RU", uk: "UA", be: "BY", kk: "KZ", uz: "UZ", de: "DE", fr: "FR", it: "IT", tr: "TR", ja: "JP",
    zh: "CN", hi: "IN", id: "ID" };
  const EN = {"phone":"Phone number","country":"Country","pick":"Choose the country","how":"How to confirm","sms":"Text message with a code","call":"Call from this phone","voice":"Call that reads out the code","telegram":"Telegram message with a code","send":"Send code","callbtn":"Call to confirm","cap":"Characters in the picture","capalt":"Captcha: letters and digits to type","sent":"We sent a code to {p}.","calling":"We are calling {p} to read out a code.","code":"Code from the message","check":"Confirm","resend":"Send again","recall":"New number","back":"Change number","callnow":"Call {n} now from {p}.","left":"Time left: {t}","ok":"Phone {p} confirmed.","busy":"Please wait…","retry":"Try again in {t}","again":"You can try again now.","first":"Confirm your phone number first.","empty":"Enter your phone number.","badcode":"Enter the digits from the message.","capneed":"Type the characters in the picture, then send again.","capbad":"The characters did not match. Try this new picture.","capx":"This site needs a check ({x}) that this form cannot show.","expired":"The time ran out. Start again.","net":"No connection to the verification service. Try again.","other":"Something went wrong ({x}). Try again.","down":"The service is not available now. Try again in a minute.","p":{"invalid-phone":"This does not look like a phone number. Check it and its country, or type it with + and the country code.","phone-not-allowed":"This number cannot be used here. Try another one.","invalid-code":"Wrong code. Attempts left: {x}.","max-attempts":"Too many wrong codes. Start again.","resend-cooldown":"It is too early for a new code.","rate-limited":"Too many attempts.","max-sends":"No more codes can be sent now. Try again later.","start-in-progress":"The message is on its way. Try again in a few seconds.","delivery-failed":"We could not reach this phone. Try again later.","forbidden":"This site may not confirm phones with this service."}};
  const CSS = ".vw{max-width:26em}.vw [hidden]{display:none!important}.vw label,.vw legend{display:block;font-weight:600;margin:.6em 0 .2em}" +
    ".vw fieldset{border:0;margin:0;padding:0}.vw fieldset label{display:inline-block;font-weight:400;margin:0 1em .2em 0}" +
    ".vw input:not([type=radio]),.vw select{font:inherit;box-sizing:border-box;width:100%;padding:.4em;border:1px solid #555;border-radius:4px}" +
    ".vw [aria-invalid=true]{border:2px solid #a40000}" +
    ".vw button{font:inherit;margin:.6em .5em 0 0;padding:.4em .9em;border:1px solid #0b57d0;border-radius:4px;background:#0b57d0;color:#fff;cursor:pointer}" +
    ".vw button.vw-2{background:#fff;color:#0b57d0}.vw button:disabled{cursor:default;opacity:.65}" +
    ".vw :focus-visible{outline:3px solid #b35c00;outline-offset:2px}.vw p{margin:.5em 0}" +
    ".vw-msg:not(:empty){color:#a40000;font-weight:600}.vw-msg:not(:empty)::before{content:\"⚠ \"}.vw-msg span{display:block;font-weight:400}" +
    ".vw-ok{font-weight:600}.vw-sr{position:absolute;width:1px;height:1px;overflow:hidden;clip-path:inset(50%);white-space:nowrap}";
  const loading = {};
  let count = 0;

  const mmss = (s) => Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
  const make = (tag, props) => Object.assign(document.createElement(tag), props);
  const fill = (s, o) => s.replace(/\{(\w)\}/g, (_, k) => o[k]);
  const tags = () => navigator.languages || [navigator.language];
  const langOf = (list) => {
    for (const tag of list) {
      const l = String(tag || "").toLowerCase();
      for (const c of [l, l.split(/[-_]/)[0]]) if (LANGS.includes(c)) return c;
    }
    return "en";
  };
  // The browser's country: its first language's region (ru-RU), else a plain one's home.
  const guess = () => {
    for (const tag of tags()) {
      const [l, ...rest] = String(tag || "").split(/[-_]/);
      const r = rest.find((x) => /^[a-z]{2}$/i.test(x)) || HOME[l.toLowerCase()];
      if (r) return r.toUpperCase();
    }
    return "";
  };
  // A language's file (null if it cannot be had), fetched once per service.
  const load = (base, lang) => (loading[base + lang] ||= fetch(`${base}/widget/${lang}.json`,
    { mode: "cors", credentials: "omit", signal: AbortSignal.timeout(TIMEOUT_MS / 4) }).then((r) => (r.ok ? r.json() : null)).catch(() => null));

  function mount(root) {
    if (root.verify) return root.verify;
    if (!document.getElementById("vw-css")) document.head.append(make("style", { id: "vw-css", textContent: CSS }));
    const base = (root.dataset.verifyUrl || ORIGIN).replace(/\/+$/, "");
    const lang = langOf([root.dataset.verifyLocale, document.documentElement.lang, ...tags()]);
    // English for any string a language lacks, or all if its file cannot be had.
    (lang === "en" ? Promise.resolve(null) : load(base, lang)).then((j) =>
      j ? build(root, base, lang, Object.assign({}, EN, j, { p: Object.assign({}, EN.p, j.p) })) : build(root, base, "en", EN));
    return (root.verify = { root });
  }

  function build(root, base, lang, t) {
    const d = root.dataset;
    const key = d.verifySiteKey;
    const rtl = lang === "ar";
    // A number reads left to right in right-to-left text.
    const show = (p) => {
      const m = /^\+7(\d{3})(\d{3})(\d{2})(\d{2})$/.exec(p || "");
      const s = m ? `+7 ${m[1]} ${m[2]}-${m[3]}-${m[4]}` : p;
      return rtl ? `\u2066${s}\u2069` : s;
    };
    const cs = (d.verifyChannel === "choice" ? "sms,call" : d.verifyChannel || "").split(",").filter((c) => /^(sms|voice|telegram|call)$/.test(c));
    const mode = cs[1] ? "choice" : cs[0] || "sms";
    // National numbers are read in the page's country, else the browser's, else one the person picks.
    const fixed = d.verifyCountry || "";
    const guessed = fixed ? "" : guess();
    const u = "vw" + ++count;
    const radio = (v, c) => `<label><input type="radio" name="${u}-c" value="${v}"${c}> ${t[v]}</label>`;
    root.classList.add("vw");
    root.lang = lang;
    root.dir = rtl ? "rtl" : "ltr";
    root.innerHTML =
      `<div data-s="phone"><div data-r="cty" hidden><label for="${u}-n">${t.country}</label>` +
      `<select id="${u}-n" aria-describedby="${u}-m"></select></div><label for="${u}-p">${t.phone}</label>` +
      `<input id="${u}-p" type="tel" dir="ltr" autocomplete="tel" aria-describedby="${u}-m">` +
      (cs[1] ? `<fieldset><legend>${t.how}</legend>${cs.map((c, i) => radio(c, i ? "" : " checked")).join("")}</fieldset>` : "") +
      `<div data-r="cap" hidden><img data-r="img" alt="${t.capalt}" width="160" height="60">` +
      `<label for="${u}-a">${t.cap}</label><input id="${u}-a" autocomplete="off" autocapitalize="none" spellcheck="false" aria-describedby="${u}-m"></div>` +
      `<button type="button" data-r="send"></button></div>` +
      `<div data-s="code" hidden><p data-r="sent"></p><label for="${u}-k">${t.code}</label>` +
      `<input id="${u}-k" dir="ltr" autocomplete="one-time-code" inputmode="numeric" maxlength="12" aria-describedby="${u}-m">` +
      `<button type="button" data-r="check">${t.check}</button></div>` +
      `<div data-s="call" hidden><p data-r="dial" tabindex="-1"></p><p data-r="left"></p></div>` +
      `<div data-r="more" hidden><button type="button" class="vw-2" data-r="resend"></button>` +
      `<button type="button" class="vw-2" data-r="back">${t.back}</button></div>` +
      `<div data-s="done" hidden><p class="vw-ok" data-r="ok" tabindex="-1"></p></div>` +
      `<p class="vw-msg" id="${u}-m" role="alert" data-r="msg"></p><p data-r="wait"></p>` +
      `<p class="vw-sr" role="status" aria-live="polite" data-r="st"></p>`;
    const $ = (r) => root.querySelector(`[data-r="${r}"]`);
    const phone = root.querySelector(`#${u}-p`), ans = root.querySelector(`#${u}-a`), code = root.querySelector(`#${u}-k`);
    const country = root.querySelector(`#${u}-n`);
    const send = $("send"), resend = $("resend"), msg = $("msg"), wait = $("wait"), st = $("st");
    // s: step, v: the verification, secret: its client secret (proof that this page started it; kept only here, so a
    // reload or another tab starts anew), skew: local clock minus the server's, until: end of a rate-limit wait.
    const s = { step: "phone", v: null, secret: "", skew: 0, cap: null, until: 0, timer: 0, poll: 0, otp: null, busy: false };

    const channel = () => (mode === "choice" ? root.querySelector(`input[name="${u}-c"]:checked`).value : mode);
    const label = () => { send.textContent = channel() === "call" ? t.callbtn : t.send; };
    const secs = (iso) => Math.max(0, Math.ceil((Date.parse(iso) + s.skew - Date.now()) / 1000));
    const say = (text) => { st.textContent = text; };
    // why: the service's words (English) under the widget's.
    const error = (text, field, why) => {
      msg.textContent = text || "";
      if (why) msg.append(make("span", { lang: "en", dir: "ltr", textContent: why[0].toUpperCase() + why.slice(1) }));
      for (const i of [phone, ans, code]) i.removeAttribute("aria-invalid");
      if (field && (text || why)) field.setAttribute("aria-invalid", "true");
    };
    const emit = (name, detail) => root.dispatchEvent(new CustomEvent(name, { bubbles: true, detail }));
    // The service's regions ("RU7 ..."), named in the widget's language.
    const ask = (focus) => load(base, lang).then((j) => {
      if (!j || !j.regions) return focus && phone.focus();
      if (!country.options.length) {
        const names = Intl.DisplayNames && new Intl.DisplayNames([lang, "en"], { type: "region" });
        const list = j.regions.split(" ").map((x) => [(names && names.of(x.slice(0, 2))) || x, x]);
        list.sort((a, b) => a[0].localeCompare(b[0], lang));
        country.append(new Option(t.pick, ""), ...list.map(([n, x]) => new Option(`${n} (\u2066+${x.slice(2)}\u2069)`, x.slice(0, 2))));
        country.value = guessed;
      }
      $("cty").hidden = false;
      if (focus) country.focus();
    });

    function go(step, focus) {
      if (s.step === "code" && step !== "code" && s.otp) { s.otp.abort(); s.otp = null; }
      if (step !== "call") clearTimeout(s.poll);
      s.step = step;
      for (const el of root.querySelectorAll("[data-s]")) el.hidden = el.dataset.s !== step;
      $("more").hidden = step !== "code" && step !== "call";
      if (focus) focus.focus();
      tick();
    }

    // One timer drives every countdown: the resend cooldown, the call's time left, a rate-limit wait.
    function tick() {
      const v = s.v, live = s.step === "code" || s.step === "call";
      let on = false;
      if (live && v) {
        const r = secs(v.resend_after);
        resend.disabled = r > 0 || s.busy || v.sends_left === 0;
        resend.textContent = (s.step === "call" ? t.recall : t.resend) + (r > 0 ? ` (${mmss(r)})` : "");
        on = r > 0;
        if (s.step === "call") {
          const left = secs(v.expires_at);
          $("left").textContent = fill(t.left, { t: mmss(left) });
          if (!left) return expire();
          on = true;
        }
      }
      if (s.until) {
        const w = Math.ceil((s.until - Date.now()) / 1000);
        if (w > 0) {
          wait.textContent = fill(t.retry, { t: mmss(w) });
          on = true;
        } else {
          s.until = 0;
          wait.textContent = "";
          error("");
          say(t.again);
          enable();
        }
      }
      clearTimeout(s.timer);
      if (on) s.timer = setTimeout(tick, 1000 - (Date.now() % 1000) + 5);
    }

    function enable() {
      const blocked = s.busy || s.until > 0;
      send.disabled = $("check").disabled = blocked;
      root.setAttribute("aria-busy", String(s.busy));
    }

    async function api(method, path, body) {
      const ac = new AbortController();
      const stop = setTimeout(() => ac.abort(), TIMEOUT_MS);
      let r;
      try {
        r = await fetch(base + "/v1/verifications" + path, {
          method, mode: "cors", credentials: "omit", cache: "no-store", signal: ac.signal,
          headers: Object.assign({ "X-Verify-Site-Key": key }, body ? { "Content-Type": "application/json" } : {},
            path && s.secret ? { "X-Verify-Client-Secret": s.secret } : {}),
          body: body ? JSON.stringify(body) : undefined,
        });
      } catch (e) {
        throw { slug: "network" };
      } finally {
        clearTimeout(stop);
      }
      const j = await r.json().catch(() => ({}));
      if (r.ok) return [r.status, j];
      j.slug = String(j.type || "").replace("/problems/", "") || "http";
      j.status = r.status;
      throw j;
    }

    async function act(work, field) {
      if (s.busy) return;
      s.busy = true;
      error("");
      say(t.busy);
      enable();
      try {
        await work();
      } catch (p) {
        problem(p, field);
      } finally {
        s.busy = false;
        enable();
        tick();
      }
    }

    function problem(p, field) {
      const slug = p.slug;
      let text = t.p[slug];
      say("");
      if (slug === "captcha-required") {
        const c = p.captcha || {};
        if (!c.image) return error(fill(t.capx, { x: c.provider || slug }));
        const retried = !!s.cap;
        s.cap = c.id;
        $("img").src = c.image;
        $("cap").hidden = false;
        ans.value = "";
        ans.focus();
        return error(retried ? t.capbad : t.capneed, ans);
      }
      if (slug === "invalid-code") text = fill(text, { x: p.attempts_left });
      if (slug === "network") text = t.net;
      if (slug === "unauthorized") text = t.p.forbidden;
      if (slug === "not-found" || slug === "not-pending" || slug === "max-attempts") {
        if (slug === "not-pending" && s.v) return api("GET", `/${s.v.id}`).then((r) => got(r[1]), expire);
        go("phone", phone);
        text = text || t.expired;
      }
      // A 400 says what to change; other words beat "went wrong".
      const why = p.detail && p.status < 500 && (p.status === 400 || !text) ? p.detail : "";
      if (!text && !why) text = p.status >= 500 ? t.down : fill(t.other, { x: p.status || slug });
      if (p.retry_after > 0) {
        s.until = Date.now() + p.retry_after * 1000;
        wait.textContent = fill(t.retry, { t: mmss(p.retry_after) });
        tick();
      }
      const bad = /phone$|not-allowed/.test(slug) ? phone : /invalid/.test(slug) ? field : null;
      const f = bad || field;
      error(text, bad, why);
      // A national number the guessed country could not read: the person picks the country.
      if (slug === "invalid-phone" && !fixed && $("cty").hidden && !/^\s*\+/.test(phone.value)) return ask(true);
      if (f && f.offsetParent) f.focus();
    }

    function got(v) {
      s.v = v;
      if (v.status === "approved") return done(v);
      if (v.status !== "pending") return expire();
      if (v.channel === "call" && v.call) {
        const n = v.call.number;
        const dial = $("dial");
        dial.textContent = "";
        const [a, b] = fill(t.callnow, { n: "\u0000", p: show(v.phone) }).split("\u0000");
        dial.append(a, make("a", { href: "tel:" + n, dir: "ltr", textContent: show(n) }), b);
        go("call", dial);
        say(dial.textContent);
        poll();
      } else {
        $("sent").textContent = fill(v.channel === "voice" ? t.calling : t.sent, { p: show(v.phone) });
        code.value = "";
        go("code", code);
        say($("sent").textContent);
        webotp();
      }
    }

    function start() {
      const raw = phone.value.trim();
      if (!raw) {
        error(t.empty, phone);
        return phone.focus();
      }
      const body = { phone: raw, channel: channel(), locale: lang };
      const c = fixed || ($("cty").hidden ? guessed : country.value);
      if (c) body.country = c;
      if (s.cap) body.captcha = { id: s.cap, answer: ans.value.trim() };
      act(async () => {
        const [status, v] = await api("POST", "", body);
        if (status === 201) s.skew = Date.now() - Date.parse(v.created_at);
        s.secret = v.client_secret || "";
        s.cap = null;
        $("cap").hidden = true;
        emit("verify:started", { id: v.id, phone: v.phone, channel: v.channel });
        got(v);
      }, s.cap ? ans : phone);
    }

    function check() {
      const c = code.value.replace(/\s+/g, "");
      if (!/^\d+$/.test(c)) {
        error(t.badcode, code);
        return code.focus();
      }
      act(async () => got((await api("POST", `/${s.v.id}/check`, { code: c }))[1]), code);
    }

    function poll() {
      clearTimeout(s.poll);
      s.poll = setTimeout(async () => {
        if (s.step !== "call") return;
        try {
          const v = (await api("GET", `/${s.v.id}`))[1];
          if (s.step === "call" && v.status !== "pending") return got(v);
        } catch (p) {
          if (p.slug !== "network" && !(p.status >= 500)) return problem(p);
        }
        poll();
      }, POLL_MS);
    }

    // WebOTP: where the browser reads the SMS (last line "@<this host> #<code>"), fill the code in and submit.
    function webotp() {
      if (!("OTPCredential" in window) || s.otp) return;
      s.otp = new AbortController();
      navigator.credentials.get({ otp: { transport: ["sms"] }, signal: s.otp.signal }).then((c) => {
        if (c && c.code && s.step === "code") {
          code.value = c.code;
          check();
        }
      }, () => {});
    }

    function expire() {
      go("phone", phone);
      error(t.expired, phone);
    }

    function done(v) {
      s.v = v;
      const form = root.closest("form");
      if (form) {
        let h = form.querySelector('input[name="verify_token"]');
        if (!h) form.append((h = make("input", { type: "hidden", name: "verify_token" })));
        h.value = v.token;
      }
      $("ok").textContent = "✓ " + fill(t.ok, { p: show(v.phone) });
      error("");
      go("done", $("ok"));
      say($("ok").textContent);
      emit("verify:approved", { token: v.token, phone: v.phone, id: v.id });
    }

    if (!fixed && !guessed) ask(false);
    label();
    enable();
    root.addEventListener("change", (e) => e.target.type === "radio" && label());
    send.addEventListener("click", start);
    $("check").addEventListener("click", check);
    $("back").addEventListener("click", () => {
      error("");
      s.secret = "";
      go("phone", phone);
    });
    resend.addEventListener("click", () =>
      act(async () => got((await api("POST", `/${s.v.id}/resend`, { channel: s.v.channel }))[1]), s.step === "code" ? code : resend));
    // Enter in a field acts on the widget's step, not on the form.
    root.addEventListener("keydown", (e) => {
      if (e.key !== "Enter" || e.target.tagName !== "INPUT") return;
      e.preventDefault();
      if (s.busy || s.until) return;
      if (s.step === "phone") start();
      else if (s.step === "code") check();
    });
    const form = root.closest("form");
    if (form) {
      form.addEventListener("submit", (e) => {
        if (s.step === "done") return;
        e.preventDefault();
        error(t.first);
        (s.step === "code" ? code : s.step === "phone" ? phone : $("dial")).focus();
      }, true);
    }
  }

  function init() {
    for (const el of document.querySelectorAll("[data-verify-site-key]")) mount(el);
  }
  window.VerifyWidget = { mount, init };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();

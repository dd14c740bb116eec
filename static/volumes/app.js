/* Volumes dashboard: small progressive enhancements on top of htmx (dialogs, toasts, uploads,
   live lease state, typeahead, keyboard shortcuts). Everything works without it, only less smoothly.
   One file over 500 lines on purpose: served as written, with no build step; each enhancement stands alone. */
(function () {
  "use strict";

  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  function csrfToken() {
    try { return JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRFToken"]; } catch (e) { return ""; }
  }

  // Toasts ------------------------------------------------------------------------------------
  function toast(message, level) {
    const box = $("#toasts");
    if (!box || !message) return;
    const el = document.createElement("div");
    el.className = "toast toast-" + (level || "info");
    el.setAttribute("role", level === "error" ? "alert" : "status");
    el.textContent = message;  // text, never HTML: messages can hold user-chosen names
    const close = document.createElement("button");
    close.type = "button"; close.className = "toast-close"; close.setAttribute("aria-label", "Dismiss");
    close.textContent = "×";
    close.addEventListener("click", () => el.remove());
    el.appendChild(close);
    box.appendChild(el);
    setTimeout(() => el.classList.add("fade"), level === "error" ? 9000 : 4500);
    setTimeout(() => el.remove(), level === "error" ? 9600 : 5100);
  }
  window.volumesToast = toast;

  function initServerToasts() {
    $$("#toasts .toast").forEach((el) => {
      const level = (el.className.match(/toast-(\w+)/) || [])[1];
      setTimeout(() => el.classList.add("fade"), level === "error" ? 9000 : 5000);
      setTimeout(() => el.remove(), level === "error" ? 9600 : 5600);
    });
  }

  // Dialogs -------------------------------------------------------------------------------------
  const modal = () => $("#modal");

  let opener = null;  // what had focus before the dialog opened: it gets focus back on close

  function openModal() {
    const dlg = modal();
    if (!dlg) return;
    if (!dlg.open) {
      const active = document.activeElement;
      opener = active && active !== document.body && !dlg.contains(active) ? active : null;
      dlg.showModal();
    }
    const focus = $("[autofocus]", dlg) || $("input:not([type=hidden]), select, textarea, button:not([data-close])", dlg);
    if (focus) focus.focus();
  }

  function closeModal() {
    const dlg = modal();
    if (dlg && dlg.open) dlg.close();
  }

  // Lease state: disable write actions while a job holds the volume --------------------------
  function applyLease() {
    const banner = $("#lease-banner");
    if (!banner) return;
    const leased = banner.dataset.leased === "1";
    const was = document.body.dataset.leased;
    document.body.dataset.leased = leased ? "1" : "0";
    $$("[data-write]").forEach((el) => {
      if (leased) el.setAttribute("aria-disabled", "true"); else el.removeAttribute("aria-disabled");
      el.title = leased ? "Disabled while the volume is in use" : (el.dataset.title || el.title);
      $$("input, button", el).concat(el.matches("button, input") ? [el] : []).forEach((c) => { c.disabled = leased; });
    });
    if (was === "1" && !leased && window.htmx) htmx.trigger(document.body, "files-refresh");
  }

  document.addEventListener("click", (e) => {
    const blocked = e.target.closest("[aria-disabled='true']");
    if (blocked) { e.preventDefault(); e.stopPropagation(); return; }
    if (e.target.closest("[data-close]")) { closeModal(); return; }
    const dismiss = e.target.closest("[data-dismiss]");
    if (dismiss) { dismiss.closest(".toast").remove(); return; }
    const dlg = modal();
    if (dlg && e.target === dlg) closeModal();  // a click on the backdrop
    const pick = e.target.closest("[data-pick]");
    if (pick) pickSuggestion(pick);
    const copy = e.target.closest("[data-copy]");
    if (copy) copyText(copy);
  }, true);

  // Copy buttons: data-copy names the input or element whose text is copied.
  function copyText(btn) {
    const source = $(btn.dataset.copy);
    if (!source) return;
    const text = "value" in source ? source.value : source.textContent;
    const done = () => { btn.dataset.copied = "1"; toast("Copied to the clipboard.", "success"); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, () => { fallbackCopy(source, text); done(); });
    } else { fallbackCopy(source, text); done(); }
  }
  function fallbackCopy(source, text) {
    const area = document.createElement("textarea");
    area.value = text; area.setAttribute("readonly", ""); area.style.position = "fixed"; area.style.opacity = "0";
    document.body.appendChild(area); area.select();
    try { document.execCommand("copy"); } catch (e) { /* the text stays selectable */ }
    area.remove();
    if (source.select) source.select();
  }

  // The file browser's selection: a bar with bulk actions shows while something is selected.
  function updateBulk() {
    const bar = $("[data-bulk-bar]");
    if (!bar) return;
    const picked = $$("[data-select]:checked");
    bar.hidden = !picked.length;
    const count = $("[data-bulk-count]", bar);
    if (count) count.textContent = picked.length + " selected";
    const all = $("[data-select-all]");
    if (all) all.checked = picked.length > 0 && picked.length === $$("[data-select]").length;
  }
  document.addEventListener("change", (e) => {
    if (e.target.matches("[data-select-all]")) $$("[data-select]").forEach((box) => { box.checked = e.target.checked; });
    if (e.target.matches("[data-select], [data-select-all]")) updateBulk();
  });
  document.addEventListener("click", (e) => {
    const zip = e.target.closest("[data-bulk-zip]");
    if (!zip) return;
    const params = $$("[data-select]:checked").map((box) => "sel=" + encodeURIComponent(box.value)).join("&");
    if (params) window.location.href = zip.dataset.bulkZip + "&" + params;
  });

  // Confirmations, in the page's own dialog (never the browser's): hx-confirm on an htmx request,
  // data-confirm on a plain form or on the button that submits one. "{count}" is the selection size.
  function askConfirm(question, label) {
    const dlg = $("#confirm");
    if (!dlg) return Promise.resolve(window.confirm(question));
    const count = $$("[data-select]:checked").length;
    $("#confirm-question", dlg).textContent = question.replace("{count}", count);
    $("[data-confirm-ok]", dlg).textContent = label || "Confirm";
    const back = document.activeElement;
    dlg.returnValue = "";
    dlg.showModal();
    $("[data-confirm-cancel]", dlg).focus();  // a careless Enter cancels
    return new Promise((resolve) => dlg.addEventListener("close", () => {
      if (back && document.contains(back)) back.focus();
      resolve(dlg.returnValue === "ok");
    }, { once: true }));
  }
  document.addEventListener("click", (e) => {
    const button = e.target.closest("#confirm button");
    if (button) $("#confirm").close(button.matches("[data-confirm-ok]") ? "ok" : "");
  });
  document.addEventListener("submit", (e) => {
    const form = e.target.closest("form[data-confirm]");
    if (!form || form.hasAttribute("hx-post")) return;
    if (form.dataset.confirmed) { delete form.dataset.confirmed; return; }
    e.preventDefault();
    askConfirm(form.dataset.confirm, form.dataset.confirmLabel).then((ok) => {
      if (ok) { form.dataset.confirmed = "1"; form.requestSubmit(e.submitter || undefined); }
    });
  });
  document.addEventListener("htmx:confirm", (e) => {
    const submitter = e.detail.triggeringEvent && e.detail.triggeringEvent.submitter;
    const question = e.detail.question || (submitter && submitter.dataset.confirm);
    if (!question) return;
    e.preventDefault();
    const label = (submitter && submitter.dataset.confirmLabel) || e.detail.elt.dataset.confirmLabel;
    askConfirm(question, label).then((ok) => { if (ok) e.detail.issueRequest(true); });
  });

  // Uploads (with progress). Plain files: multipart, one generation per batch of 50. A folder (or
  // more than 50 files): one tar stream, so its whole tree lands as one generation. The tar is a
  // Blob made of headers and the File objects themselves: nothing is read into memory first.
  const enc = new TextEncoder();

  function tarHeader(name, size, type) {
    const h = new Uint8Array(512);
    const put = (text, at, len) => { const b = enc.encode(text); h.set(b.subarray(0, len), at); };
    const octal = (n, len) => n.toString(8).padStart(len - 1, "0") + "\0";
    put(name, 0, 100);
    put(octal(0o644, 8), 100, 8); put(octal(0, 8), 108, 8); put(octal(0, 8), 116, 8);
    put(octal(size, 12), 124, 12); put(octal(Math.floor(Date.now() / 1000), 12), 136, 12);
    put("        ", 148, 8); put(type, 156, 1); put("ustar\0", 257, 6); put("00", 263, 2);
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += h[i];
    put(sum.toString(8).padStart(6, "0") + "\0 ", 148, 8);
    return h;
  }

  function tarBlob(items) {  // items: [{file, path}]
    const parts = [];
    const pad = (n) => { const r = n % 512; if (r) parts.push(new Uint8Array(512 - r)); };
    items.forEach(({file, path}) => {
      const name = enc.encode(path);
      if (name.length > 100) {  // a PAX record carries the long name ("LEN path=NAME\n")
        const body = " path=" + path + "\n";
        let len = enc.encode(body).length;
        len += String(len + String(len).length).length;
        const record = enc.encode(len + body);
        parts.push(tarHeader("PaxHeader", record.length, "x"), record);
        pad(record.length);
      }
      parts.push(tarHeader(path, file.size, "0"), file);
      pad(file.size);
    });
    parts.push(new Uint8Array(1024));
    return new Blob(parts, {type: "application/x-tar"});
  }

  function upload(fileList, paths) {
    const browser = $("#file-browser");
    const files = Array.from(fileList || []);
    if (!browser || !files.length) return;
    if (document.body.dataset.leased === "1") { toast("The volume is in use by a job; upload when it has finished.", "error"); return; }
    const max = parseInt(browser.dataset.maxFileSize || "0", 10);
    const tooBig = max ? files.filter((f) => f.size > max) : [];
    if (tooBig.length) {
      toast(tooBig[0].name + " is " + humanSize(tooBig[0].size) + ", over the limit of " + humanSize(max) + " per file; make it smaller or split it.", "error");
      return;
    }
    const items = files.map((f, i) => ({file: f, path: (paths && paths[i]) || f.webkitRelativePath || f.name}));
    const asTar = items.length > 50 || items.some((it) => it.path.includes("/"));
    const status = $("[data-upload-status]");  // outside the browser, which refreshes
    const bar = status && $(".progress-bar", status);
    const text = status && $("[data-upload-text]", status);
    const total = files.reduce((n, f) => n + f.size, 0) || 1;
    const label = files.length === 1 ? files[0].name : files.length + " files";
    if (status) { status.hidden = false; status.classList.remove("done", "failed"); }
    const setProgress = (pct, msg) => {
      if (bar) bar.style.width = pct + "%";
      if (status) $(".progress", status).setAttribute("aria-valuenow", String(Math.round(pct)));
      if (text) text.textContent = msg;
    };
    // Django accepts at most 100 files per multipart request: batches of 50, one generation each.
    const batches = [];
    if (asTar) batches.push(items);
    else for (let i = 0; i < items.length; i += 50) batches.push(items.slice(i, i + 50));
    let sent = 0;
    const messages = [];
    setProgress(0, "Uploading " + label + "…");

    function sendBatch(index) {
      const batch = batches[index];
      const batchSize = batch.reduce((n, it) => n + it.file.size, 0);
      const xhr = new XMLHttpRequest();
      let body;
      if (asTar) {
        const folder = browser.dataset.folder || "";
        xhr.open("POST", browser.dataset.uploadUrl + "?folder=" + encodeURIComponent(folder));
        body = tarBlob(batch);
      } else {
        body = new FormData();
        body.append("folder", browser.dataset.folder || "");
        batch.forEach((it) => { body.append("files", it.file, it.file.name); body.append("relpath", it.path); });
        xhr.open("POST", browser.dataset.uploadUrl);
      }
      xhr.setRequestHeader("X-CSRFToken", csrfToken());
      xhr.upload.addEventListener("progress", (e) => {
        const loaded = sent + (e.lengthComputable ? Math.min(e.loaded, batchSize) : 0);
        const pct = (100 * loaded) / total;
        setProgress(Math.min(pct, 99), "Uploading " + label + "… " + Math.round(pct) + "% of " + humanSize(total));
      });
      xhr.addEventListener("load", () => {
        let reply = {};
        try { reply = JSON.parse(xhr.responseText || "{}"); } catch (e) { reply = {}; }
        if (xhr.status >= 200 && xhr.status < 300) {
          sent += batchSize;
          messages.push(reply.message || "Uploaded.");
          htmx.trigger(document.body, "files-refresh");
          if (index + 1 < batches.length) { sendBatch(index + 1); return; }
          const msg = messages.length === 1 ? messages[0] : "Uploaded " + files.length + " files.";
          setProgress(100, msg);
          if (status) status.classList.add("done");
          setTimeout(() => { if (status) status.hidden = true; }, 2500);
        } else {
          let msg = reply.detail;
          if (!msg) { try { msg = JSON.parse(xhr.getResponseHeader("HX-Trigger")).toast.message; } catch (e) { msg = null; } }
          fail(msg || "The upload failed (HTTP " + xhr.status + "). Try again.");
        }
      });
      xhr.addEventListener("error", () => fail("The upload failed: the server could not be reached. Check your connection and retry."));
      xhr.send(body);
    }
    function fail(msg) {
      setProgress(100, msg);
      if (status) status.classList.add("failed");
      toast(msg, "error");
    }
    sendBatch(0);
  }

  // Dropped folders: walk their entries (FileSystemEntry API) into files with relative paths.
  function walkEntries(entries) {
    const files = [], paths = [];
    const visit = (entry) => new Promise((resolve) => {
      if (entry.isFile) {
        entry.file((f) => { files.push(f); paths.push(entry.fullPath.replace(/^\//, "")); resolve(); }, () => resolve());
      } else if (entry.isDirectory) {
        const reader = entry.createReader();
        const all = [];
        const more = () => reader.readEntries((batch) => {  // readEntries answers in slices
          if (batch.length) { all.push(...batch); more(); } else Promise.all(all.map(visit)).then(resolve);
        }, () => resolve());
        more();
      } else resolve();
    });
    return Promise.all(entries.map(visit)).then(() => ({files, paths}));
  }
  window.volumesUploadEntries = (entries) => walkEntries(entries).then(({files, paths}) => upload(files, paths));

  function humanSize(n) {
    const units = ["bytes", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + units[i];
  }

  document.addEventListener("change", (e) => {
    if (e.target.matches("[data-upload-input]")) { upload(e.target.files); e.target.value = ""; }
    if (e.target.matches("#id_language")) swapExample(e.target);
    if (e.target.matches("[data-storage-form] select[name=kind]")) showKindFields(e.target.form);
  });

  let dragDepth = 0;
  const dropzone = (e) => { const z = e.target.closest && e.target.closest("[data-dropzone].can-drop"); return z; };
  document.addEventListener("dragenter", (e) => { const z = dropzone(e); if (z) { dragDepth++; z.classList.add("dragging"); e.preventDefault(); } });
  document.addEventListener("dragover", (e) => { if (dropzone(e)) e.preventDefault(); });
  document.addEventListener("dragleave", (e) => { const z = dropzone(e); if (z && --dragDepth <= 0) { dragDepth = 0; z.classList.remove("dragging"); } });
  document.addEventListener("drop", (e) => {
    const z = dropzone(e);
    if (!z) return;
    e.preventDefault(); dragDepth = 0; z.classList.remove("dragging");
    const entries = Array.from((e.dataTransfer && e.dataTransfer.items) || [])
      .map((item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null)).filter(Boolean);
    if (entries.some((entry) => entry.isDirectory)) { window.volumesUploadEntries(entries); return; }
    if (e.dataTransfer && e.dataTransfer.files.length) upload(e.dataTransfer.files);
  });

  // Share typeahead -------------------------------------------------------------------------------
  function pickSuggestion(btn) {
    const box = btn.closest(".typeahead");
    if (!box) return;
    $("[data-typeahead]", box).value = btn.dataset.label;
    $("[data-principal]", box).value = btn.dataset.pick;
    $(".suggestions", box).innerHTML = "";
    $("[data-typeahead]", box).setAttribute("aria-expanded", "false");
    const level = $("select[name=level]", box.closest("form"));
    if (level) level.focus();
  }

  document.addEventListener("input", (e) => {
    if (e.target.matches("[data-typeahead]")) {
      const hidden = $("[data-principal]", e.target.closest(".typeahead"));
      if (hidden) hidden.value = "";
    }
    if (e.target.matches("[data-confirm-name]")) checkConfirm(e.target);
  });

  // A share's Save button shows only once its access differs from the saved one.
  function markShareChange(select) {
    const save = $("[data-save-share]", select.form);
    if (save) save.hidden = select.value === select.dataset.saved;
  }
  document.addEventListener("change", (e) => {
    if (e.target.matches("[data-share-change] select")) markShareChange(e.target);
  });

  function checkConfirm(input) {
    const btn = $("[data-confirm-button]", input.form);
    if (btn) btn.disabled = input.value !== input.dataset.confirmName;
  }

  // Keyboard ----------------------------------------------------------------------------------------
  // Tab and Shift+Tab go round inside an open dialog (the browser would move on to its own toolbar).
  function trapTab(e) {
    const dlg = modal();
    if (e.key !== "Tab" || !dlg || !dlg.open) return;
    const focusable = $$("a[href], button:not([disabled]), input:not([disabled]):not([type=hidden]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex='-1'])", dlg)
      .filter((el) => el.offsetParent !== null || el === document.activeElement);
    if (!focusable.length) return;
    const first = focusable[0], last = focusable[focusable.length - 1];
    if (e.shiftKey && (document.activeElement === first || !dlg.contains(document.activeElement))) { e.preventDefault(); last.focus(); }
    else if (!e.shiftKey && (document.activeElement === last || !dlg.contains(document.activeElement))) { e.preventDefault(); first.focus(); }
  }
  document.addEventListener("keydown", trapTab);

  document.addEventListener("keydown", (e) => {
    const typing = e.target.closest("input, textarea, select, [contenteditable]");
    if (e.key === "/" && !typing && !e.ctrlKey && !e.metaKey && !e.altKey) {
      const search = $("[data-search]");
      if (search) { e.preventDefault(); search.focus(); search.select(); }
    }
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && e.target.closest("#job-form")) {
      e.preventDefault(); e.target.closest("form").requestSubmit();
    }
    // Arrow keys move through typeahead suggestions; Escape closes them before the dialog.
    const box = e.target.closest && e.target.closest(".typeahead");
    if (box) {
      const options = $$(".suggestion", box);
      const i = options.indexOf(document.activeElement);
      if (e.key === "ArrowDown" && options.length) { e.preventDefault(); options[Math.min(i + 1, options.length - 1)].focus(); }
      if (e.key === "ArrowUp" && options.length) { e.preventDefault(); (i <= 0 ? $("[data-typeahead]", box) : options[i - 1]).focus(); }
      if (e.key === "Escape" && $(".suggestions", box).children.length) {
        e.preventDefault(); e.stopPropagation(); $(".suggestions", box).innerHTML = ""; $("[data-typeahead]", box).focus();
      }
    }
  }, true);

  // Job form: the example follows the language unless the script was edited ---------------------
  function swapExample(select) {
    const data = $("#job-examples");
    const area = $("#id_content");
    if (!data || !area) return;
    const examples = JSON.parse(data.textContent);
    const pristine = Object.values(examples).some((text) => text.trim() === area.value.trim()) || !area.value.trim();
    if (pristine && examples[select.value]) area.value = examples[select.value];
  }

  // Storage form: show the fields of the chosen kind --------------------------------------------
  function showKindFields(form) {
    if (!form) return;
    const kind = $("select[name=kind]", form).value;
    $$("[data-kinds]", form).forEach((input) => {
      const field = input.closest(".field");
      if (field) field.hidden = !input.dataset.kinds.split(" ").includes(kind);
    });
  }

  // htmx wiring ---------------------------------------------------------------------------------------
  // The elements matching sel inside root, and root itself (htmx:load hands over the swapped element).
  const within = (sel, root) => (root.matches && root.matches(sel) ? [root] : []).concat($$(sel, root));

  function onLoad(root) {
    within("[data-storage-form]", root).forEach(showKindFields);
    $$("[data-confirm-name]", root).forEach(checkConfirm);
    updateBulk();
    $$("[data-share-change] select", root).forEach(markShareChange);
    $$("[data-write]", root).forEach((el) => { if (!el.dataset.title) el.dataset.title = el.title || ""; });
    applyLease();
  }

  document.addEventListener("DOMContentLoaded", () => {
    initServerToasts();
    onLoad(document);
    const dlg = modal();
    if (dlg) dlg.addEventListener("close", () => {
      $("#modal-body").innerHTML = "";
      // Back to the opener; if a refresh replaced it, to its replacement (same label) or the main area.
      let back = opener && document.contains(opener) ? opener : null;
      if (!back && opener && opener.getAttribute("aria-label")) {
        back = $$("[aria-label]").find((el) => el.getAttribute("aria-label") === opener.getAttribute("aria-label"));
      }
      (back || $("#main")).focus();
      opener = null;
    });
    document.body.addEventListener("toast", (e) => toast(e.detail.message, e.detail.level));
    document.body.addEventListener("closeModal", closeModal);
    // Open once htmx has wired the new content (after settle): shown earlier, typing and the
    // autofocus happen before its triggers listen and are lost.
    document.body.addEventListener("htmx:afterSettle", (e) => {
      // An action that closed the dialog answers with no swap: nothing to reopen.
      const answered = e.detail.xhr && e.detail.xhr.responseText.trim();
      if (e.detail.target && e.detail.target.id === "modal-body" && answered) openModal();
    });
    document.body.addEventListener("htmx:load", (e) => onLoad(e.detail.elt));
    document.body.addEventListener("htmx:beforeSwap", (e) => {
      // Suggestions answered after a pick are stale: they would reopen the list over the form.
      const picked = $("#share-who") && $("[data-principal]", $("#share-who").closest(".typeahead"));
      if (e.detail.target && e.detail.target.id === "share-suggestions" && picked && picked.value) {
        e.detail.shouldSwap = false;
      }
      // A suggestion list replaced under the focus: remember which one had it, to focus it again.
      if (e.detail.target && e.detail.target.id === "share-suggestions") {
        const i = $$(".suggestion", e.detail.target).indexOf(document.activeElement);
        e.detail.target.dataset.focusIndex = String(i);
      }
      const log = $("#job-log");
      if (log && e.detail.target && e.detail.target.id === "job-live") {
        document.body.dataset.logAtBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 24 ? "1" : "0";
      }
    });
    document.body.addEventListener("htmx:afterSettle", (e) => {
      const list = e.detail.target;
      if (list && list.id === "share-suggestions" && list.dataset.focusIndex && list.dataset.focusIndex !== "-1") {
        const options = $$(".suggestion", list);
        const again = options[Math.min(parseInt(list.dataset.focusIndex, 10), options.length - 1)];
        if (again) again.focus();
        list.dataset.focusIndex = "-1";
      }
      // A swap inside an open dialog that removed the focused element: keep focus in the dialog.
      const dlg = modal();
      if (dlg && dlg.open && !dlg.contains(document.activeElement)) {
        const target = e.detail.target;
        const near = target && dlg.contains(target) ? $("[data-typeahead]", dlg) || target : null;
        const first = near || $("input:not([type=hidden]), select, textarea, button", dlg);
        if (first) first.focus();
      }
      const log = $("#job-log");
      if (log && document.body.dataset.logAtBottom !== "0") log.scrollTop = log.scrollHeight;
      // A test result shows next to its button; bring it into view in a tall dialog or on a phone.
      if (e.detail.target && e.detail.target.classList && e.detail.target.classList.contains("test-result")) {
        e.detail.target.scrollIntoView({block: "nearest"});
      }
      if (e.detail.target && e.detail.target.id === "share-suggestions") {
        const input = $("#share-who");
        if (input) input.setAttribute("aria-expanded", e.detail.target.children.length ? "true" : "false");
      }
    });
    document.body.addEventListener("htmx:responseError", (e) => {
      if (e.detail.xhr.getResponseHeader("HX-Trigger")) return;  // the server sent its own message
      toast("The server could not do that (HTTP " + e.detail.xhr.status + "). Reload the page and try again.", "error");
    });
    document.body.addEventListener("htmx:sendError", () => {
      toast("The server could not be reached. Check your connection; the page retries by itself.", "error");
    });
    const log = $("#job-log");
    if (log) log.scrollTop = log.scrollHeight;
  });
  // Polling pauses while the tab is hidden (a trigger filter would need eval, which the CSP forbids).
  document.body.addEventListener("htmx:beforeRequest", (e) => {
    const elt = e.detail && e.detail.elt;
    if (elt && elt.hasAttribute && elt.hasAttribute("data-poll-visible") && document.visibilityState !== "visible") {
      e.preventDefault();
    }
  });
})();

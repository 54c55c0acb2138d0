// Browser glue for the C UI: the DOM, fetch, XMLHttpRequest upload
// progress, the WebSocket, timers, the location hash, dialogs and the 2D
// canvas have no C interface, so these small generic functions expose
// them. Every decision is made in C; this file only creates elements, sets
// text, draws lines and moves bytes. Elements are addressed by their id.
mergeInto(LibraryManager.library, {
  // Create <tag id=id> with text under the element parentId.
  dom_create: function (tag, parentId, id, text) {
    const el = document.createElement(UTF8ToString(tag));
    if (id) el.id = UTF8ToString(id);
    if (text) el.textContent = UTF8ToString(text);
    const parent = document.getElementById(UTF8ToString(parentId));
    if (parent) parent.appendChild(el);
  },

  dom_set_text: function (id, text) {
    const el = document.getElementById(UTF8ToString(id));
    if (el) el.textContent = UTF8ToString(text);
  },

  dom_set_attr: function (id, name, value) {
    const el = document.getElementById(UTF8ToString(id));
    if (el) el.setAttribute(UTF8ToString(name), UTF8ToString(value));
  },

  dom_remove_attr: function (id, name) {
    const el = document.getElementById(UTF8ToString(id));
    if (el) el.removeAttribute(UTF8ToString(name));
  },

  // Add the class when on is non-zero, else remove it.
  dom_set_class: function (id, name, on) {
    const el = document.getElementById(UTF8ToString(id));
    if (el) el.classList.toggle(UTF8ToString(name), on !== 0);
  },

  // Remove every child of the element.
  dom_clear: function (id) {
    const el = document.getElementById(UTF8ToString(id));
    if (el) el.replaceChildren();
  },

  dom_remove: function (id) {
    const el = document.getElementById(UTF8ToString(id));
    if (el) el.remove();
  },

  dom_focus: function (id) {
    const el = document.getElementById(UTF8ToString(id));
    if (el) el.focus();
  },

  // Copy the value of an input or select into buf, NUL-terminated within
  // size bytes. Returns the value's length in bytes, or -1 when the element
  // is missing.
  dom_get_value: function (id, buf, size) {
    const el = document.getElementById(UTF8ToString(id));
    if (!el) return -1;
    stringToUTF8(String(el.value), buf, size);
    return lengthBytesUTF8(String(el.value));
  },

  dom_set_value: function (id, value) {
    const el = document.getElementById(UTF8ToString(id));
    if (el) el.value = UTF8ToString(value);
  },

  // Call cb(ctx) on each event of that type on the element. Form submits
  // are kept from reloading the page.
  dom_on: function (id, type, cb, ctx) {
    const el = document.getElementById(UTF8ToString(id));
    const name = UTF8ToString(type);
    if (!el) return;
    el.addEventListener(name, function (ev) {
      if (name === 'submit') ev.preventDefault();
      {{{ makeDynCall('vi', 'cb') }}}(ctx);
    });
  },

  // Call cb(status, text, ctx) with text as a C string, which is freed
  // after cb returns.
  $http_deliver: function (status, text, cb, ctx) {
    const size = lengthBytesUTF8(text) + 1;
    const ptr = _malloc(size);
    stringToUTF8(text, ptr, size);
    {{{ makeDynCall('viii', 'cb') }}}(status, ptr, ctx);
    _free(ptr);
  },

  // Send a request and call cb(status, body, ctx) with the body as a C
  // string, which is freed after cb returns. status is 0 on a network
  // error. A non-NULL body is sent as JSON, and a non-NULL csrf as the
  // X-CSRF-Token header.
  http_request__deps: ['$http_deliver'],
  http_request: function (method, url, csrf, body, cb, ctx) {
    const init = {
      method: UTF8ToString(method),
      credentials: 'same-origin',
      headers: {},
    };
    if (csrf) init.headers['X-CSRF-Token'] = UTF8ToString(csrf);
    if (body) {
      init.headers['Content-Type'] = 'application/json';
      init.body = UTF8ToString(body);
    }
    fetch(UTF8ToString(url), init)
      .then(function (r) {
        return r.text().then(function (t) {
          http_deliver(r.status, t, cb, ctx);
        });
      })
      .catch(function (e) { http_deliver(0, String(e), cb, ctx); });
  },

  // Send the file chosen in <input type=file id=inputId> as the raw body
  // of a POST with Content-Type application/zip. progress(loaded, total,
  // ctx) gets the bytes sent so far, and cb(status, body, ctx) the reply as
  // for http_request. Returns 0, or -1 when no file is chosen.
  http_upload__deps: ['$http_deliver'],
  http_upload: function (url, csrf, inputId, progress, cb, ctx) {
    const input = document.getElementById(UTF8ToString(inputId));
    const file = input && input.files ? input.files[0] : null;
    if (!file) return -1;
    const xhr = new XMLHttpRequest();
    xhr.open('POST', UTF8ToString(url));
    xhr.setRequestHeader('Content-Type', 'application/zip');
    if (csrf) xhr.setRequestHeader('X-CSRF-Token', UTF8ToString(csrf));
    xhr.upload.onprogress = function (ev) {
      {{{ makeDynCall('vddi', 'progress') }}}(ev.loaded,
        ev.lengthComputable ? ev.total : file.size, ctx);
    };
    xhr.onload = function () {
      http_deliver(xhr.status, xhr.responseText, cb, ctx);
    };
    xhr.onerror = function () {
      http_deliver(0, 'network error', cb, ctx);
    };
    xhr.send(file);
    return 0;
  },

  // Copy the chosen file's name into buf. Returns the file's size in
  // bytes, or -1 when no file is chosen.
  dom_file_info: function (inputId, buf, size) {
    const input = document.getElementById(UTF8ToString(inputId));
    const file = input && input.files ? input.files[0] : null;
    if (!file) return -1;
    stringToUTF8(file.name, buf, size);
    return file.size;
  },

  // Open a WebSocket to path on this page's host. on_open(ctx),
  // on_message(text, ctx) and on_close(code, opened, ctx) report its
  // life; opened is 1 when the socket had opened before it closed.
  // Returns the handle for ws_send and ws_close.
  ws_open__deps: ['$ws_sockets'],
  ws_open: function (path, onOpen, onMessage, onClose, ctx) {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const url = scheme + '://' + location.host + UTF8ToString(path);
    const handle = ws_sockets.next++;
    let opened = 0;
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (e) {
      setTimeout(function () {
        {{{ makeDynCall('viii', 'onClose') }}}(1006, 0, ctx);
      }, 0);
      return handle;
    }
    ws_sockets.open[handle] = ws;
    ws.onopen = function () {
      opened = 1;
      {{{ makeDynCall('vi', 'onOpen') }}}(ctx);
    };
    ws.onmessage = function (ev) {
      if (typeof ev.data !== 'string') return;
      const size = lengthBytesUTF8(ev.data) + 1;
      const ptr = _malloc(size);
      stringToUTF8(ev.data, ptr, size);
      {{{ makeDynCall('vii', 'onMessage') }}}(ptr, ctx);
      _free(ptr);
    };
    ws.onclose = function (ev) {
      if (ws_sockets.open[handle] !== ws) return;
      delete ws_sockets.open[handle];
      {{{ makeDynCall('viii', 'onClose') }}}(ev.code, opened, ctx);
    };
    return handle;
  },

  ws_send__deps: ['$ws_sockets'],
  ws_send: function (handle, text) {
    const ws = ws_sockets.open[handle];
    if (ws && ws.readyState === 1) ws.send(UTF8ToString(text));
  },

  // Close the socket without calling its on_close.
  ws_close__deps: ['$ws_sockets'],
  ws_close: function (handle) {
    const ws = ws_sockets.open[handle];
    if (!ws) return;
    delete ws_sockets.open[handle];
    ws.close(1000);
  },

  $ws_sockets: { next: 1, open: {} },

  // Call cb(ctx) once after ms milliseconds; returns the id for
  // timer_cancel.
  timer_after: function (ms, cb, ctx) {
    return setTimeout(function () {
      {{{ makeDynCall('vi', 'cb') }}}(ctx);
    }, ms);
  },

  timer_cancel: function (timer) {
    clearTimeout(timer);
  },

  // Fill buf with size - 1 random hex digits and a NUL.
  random_hex: function (buf, size) {
    const bytes = new Uint8Array(size);
    crypto.getRandomValues(bytes);
    let text = '';
    for (let i = 0; i + 1 < size; i++) text += (bytes[i] & 15).toString(16);
    stringToUTF8(text, buf, size);
  },

  // 1 when the checkbox or radio button is checked, else 0.
  dom_get_checked: function (id) {
    const el = document.getElementById(UTF8ToString(id));
    return el && el.checked ? 1 : 0;
  },

  dom_set_checked: function (id, on) {
    const el = document.getElementById(UTF8ToString(id));
    if (el) el.checked = on !== 0;
  },

  // Show the <dialog> as a modal; Escape closes it.
  dom_dialog_open: function (id) {
    const el = document.getElementById(UTF8ToString(id));
    if (el && !el.open) el.showModal();
  },

  dom_dialog_close: function (id) {
    const el = document.getElementById(UTF8ToString(id));
    if (el && el.open) el.close();
  },

  // Call cb(ctx) every ms milliseconds; returns the id for timer_clear.
  timer_every: function (ms, cb, ctx) {
    return setInterval(function () {
      {{{ makeDynCall('vi', 'cb') }}}(ctx);
    }, ms);
  },

  timer_clear: function (timer) {
    clearInterval(timer);
  },

  // Copy location.hash, "#" included, into buf (size bytes).
  location_get_hash: function (buf, size) {
    stringToUTF8(window.location.hash, buf, size);
  },

  location_set_hash: function (hash) {
    window.location.hash = UTF8ToString(hash);
  },

  // Call cb(ctx) whenever the hash changes, browser back included.
  location_on_hash: function (cb, ctx) {
    window.addEventListener('hashchange', function () {
      {{{ makeDynCall('vi', 'cb') }}}(ctx);
    });
  },

  // Clear the canvas; its size is its width and height attributes.
  canvas_clear: function (id) {
    const el = document.getElementById(UTF8ToString(id));
    if (el) el.getContext('2d').clearRect(0, 0, el.width, el.height);
  },

  canvas_line: function (id, x0, y0, x1, y1, color, width) {
    const el = document.getElementById(UTF8ToString(id));
    if (!el) return;
    const g = el.getContext('2d');
    g.strokeStyle = UTF8ToString(color);
    g.lineWidth = width;
    g.beginPath();
    g.moveTo(x0, y0);
    g.lineTo(x1, y1);
    g.stroke();
  },

  canvas_text: function (id, x, y, text, color) {
    const el = document.getElementById(UTF8ToString(id));
    if (!el) return;
    const g = el.getContext('2d');
    g.fillStyle = UTF8ToString(color);
    g.font = '12px system-ui, sans-serif';
    g.fillText(UTF8ToString(text), x, y);
  },
});

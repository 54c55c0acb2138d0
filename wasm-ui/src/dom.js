// Browser glue for the C UI: the DOM, fetch, timers, the location hash and
// the 2D canvas have no C interface, so these small generic functions expose
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

  // Send a request and call cb(status, body, ctx) with the body as a C
  // string, which is freed after cb returns. status is 0 on a network
  // error. A non-NULL body is sent as JSON, and a non-NULL csrf as the
  // X-CSRF-Token header.
  http_request: function (method, url, csrf, body, cb, ctx) {
    const done = function (status, text) {
      const size = lengthBytesUTF8(text) + 1;
      const ptr = _malloc(size);
      stringToUTF8(text, ptr, size);
      {{{ makeDynCall('viii', 'cb') }}}(status, ptr, ctx);
      _free(ptr);
    };
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
        return r.text().then(function (t) { done(r.status, t); });
      })
      .catch(function (e) { done(0, String(e)); });
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

// Browser glue for the C UI: the DOM and fetch have no C interface, so
// these few functions expose them. Every decision is made in C; this file
// only creates elements, sets text and moves bytes.
mergeInto(LibraryManager.library, {
  // Create <tag id=id> with text under the element parentId.
  dom_create: function (tag, parentId, id, text) {
    const el = document.createElement(UTF8ToString(tag));
    if (id) el.id = UTF8ToString(id);
    if (text) el.textContent = UTF8ToString(text);
    document.getElementById(UTF8ToString(parentId)).appendChild(el);
  },

  dom_set_text: function (id, text) {
    const el = document.getElementById(UTF8ToString(id));
    if (el) el.textContent = UTF8ToString(text);
  },

  dom_set_attr: function (id, name, value) {
    const el = document.getElementById(UTF8ToString(id));
    if (el) el.setAttribute(UTF8ToString(name), UTF8ToString(value));
  },

  // GET url and call cb(status, body, ctx) with the body as a C string
  // that is freed after cb returns; status is 0 on a network error.
  http_get: function (url, cb, ctx) {
    const done = function (status, text) {
      const size = lengthBytesUTF8(text) + 1;
      const ptr = _malloc(size);
      stringToUTF8(text, ptr, size);
      {{{ makeDynCall('viii', 'cb') }}}(status, ptr, ctx);
      _free(ptr);
    };
    fetch(UTF8ToString(url), { credentials: 'same-origin' })
      .then(function (r) {
        return r.text().then(function (t) { done(r.status, t); });
      })
      .catch(function (e) { done(0, String(e)); });
  },
});

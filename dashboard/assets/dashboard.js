// tulle dashboard: live updates of the open page over Server-Sent Events.
// The page is complete without this script; with it, the server pushes the fragments that
// changed (at most every 2 s), and only while the tab is visible.
(function () {
  'use strict';
  var base = document.body.getAttribute('data-live');
  var status = document.getElementById('live-status');
  if (!base || !window.EventSource) { return; }
  var source = null;

  function setStatus(text, state) {
    if (status) {
      status.textContent = text;
      status.className = 'live-status ' + state;
    }
  }

  // id:hash of the fragments on the page, so that the server sends only what differs.
  function known() {
    var parts = [];
    var sections = document.querySelectorAll('section.fragment[data-hash]');
    for (var i = 0; i < sections.length; i++) {
      parts.push(sections[i].id + ':' + sections[i].getAttribute('data-hash'));
    }
    return parts.join(',');
  }

  function replace(event) {
    var nl = event.data.indexOf('\n');
    var head = event.data.slice(0, nl).split(' ');
    var el = document.getElementById(head[0]);
    if (!el) { return; }
    // Keep the scroll position of scrollable parts (the topology).
    var scrolled = el.querySelector('.graph');
    var left = scrolled ? scrolled.scrollLeft : 0;
    var top = scrolled ? scrolled.scrollTop : 0;
    el.innerHTML = event.data.slice(nl + 1);
    el.setAttribute('data-hash', head[1]);
    var again = el.querySelector('.graph');
    if (again) { again.scrollLeft = left; again.scrollTop = top; }
  }

  function open() {
    if (source) { return; }
    source = new EventSource(base + '&known=' + encodeURIComponent(known()));
    source.addEventListener('fragment', replace);
    source.addEventListener('tick', function (e) { setStatus('live · ' + e.data, 'on'); });
    source.addEventListener('problem', function (e) { setStatus(e.data, 'warn'); });
    source.onerror = function () { setStatus('reconnecting…', 'off'); };
  }

  function close() {
    if (source) { source.close(); source = null; }
    setStatus('paused while hidden', 'off');
  }

  document.addEventListener('visibilitychange', function () {
    if (document.hidden) { close(); } else { open(); }
  });
  window.addEventListener('pagehide', close);
  if (!document.hidden) { open(); }
}());

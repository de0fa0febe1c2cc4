// The login page: show the error when the server sent us back after a wrong token, either as a
// redirect to /login?error=1 or as the page itself answered with 401.
(() => {
  'use strict';
  const error = document.getElementById('login-error');
  let wrong = /(^|[?&])error(=|&|$)/.test(location.search);
  try {
    const nav = performance.getEntriesByType('navigation')[0];
    if (nav && nav.responseStatus === 401) wrong = true;
  } catch {
    // older browsers: the query string is enough
  }
  if (wrong && error) {
    error.hidden = false;
    const input = document.getElementById('token');
    if (input) input.focus();
  }
})();

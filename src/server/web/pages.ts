/**
 * The two HTML pages of the web view: the fleet page's shell (the script fills it) and the login form. Neither
 * carries fleet data; the one variable text, the login error, is one of the server's own sentences, escaped
 * anyway.
 */

/** Escapes text for HTML element content and quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c,
  );
}

const HEAD = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<link rel="stylesheet" href="/assets/style.css">`;

/** The fleet page: a shell the script renders the fleet into (tables built with textContent, never markup). */
export function fleetPage(): string {
  return `${HEAD}
<title>prfleet: fleet</title>
<script type="module" src="/assets/app.js"></script>
</head>
<body>
<header>
<h1>prfleet fleet view</h1>
<p id="status" role="status" aria-live="polite">loading…</p>
<form method="post" action="/logout"><button type="submit">Log out</button></form>
</header>
<main id="fleet"><noscript>The fleet view needs JavaScript; the same data is at /api/v1/fleet (JSON).</noscript></main>
</body>
</html>
`;
}

/** The login form: the token is posted to /login, which sets an HttpOnly cookie. */
export function loginPage(error: string): string {
  return `${HEAD}
<title>prfleet: log in</title>
</head>
<body>
<main class="login">
<h1>prfleet fleet view</h1>
<form method="post" action="/login" id="login">
<label for="token">Bearer token (viewer or above)</label>
<input id="token" name="token" type="password" autocomplete="off" required spellcheck="false" placeholder="prf_…">
<button type="submit">Log in</button>
</form>
${error === '' ? '' : `<p class="error" role="alert">${escapeHtml(error)}</p>`}
<p class="hint">An admin creates one with <code>prfleet-tokens create --role viewer --name NAME</code> (or <code>prfleet tokens create</code>). It is kept in an HttpOnly cookie for this browser session.</p>
</main>
</body>
</html>
`;
}

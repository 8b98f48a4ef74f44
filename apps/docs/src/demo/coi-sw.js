/*
 * relp docs: a service worker that makes the site cross-origin isolated on hosts that cannot set response headers
 * (GitHub Pages, a plain file server). It adds Cross-Origin-Opener-Policy and Cross-Origin-Embedder-Policy to the
 * site's own responses, so that after one reload the page (and its worker) may use SharedArrayBuffer, which
 * multi-threaded WebAssembly needs. Requests to other origins (the Hugging Face hub) pass untouched: they are CORS
 * fetches, which require-corp allows. The demo page registers it (src/demo/isolation.ts) only when the headers
 * are missing.
 */
self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (new URL(request.url).origin !== self.location.origin) return;
  // A devtools-style request the service worker may not answer from the network.
  if (request.cache === 'only-if-cached' && request.mode !== 'same-origin') return;
  event.respondWith(
    fetch(request).then((response) => {
      if (response.status === 0 || response.type === 'opaqueredirect') return response;
      const headers = new Headers(response.headers);
      headers.set('Cross-Origin-Opener-Policy', 'same-origin');
      headers.set('Cross-Origin-Embedder-Policy', 'require-corp');
      headers.set('Cross-Origin-Resource-Policy', 'same-origin');
      return new Response(response.body, {
        status: response.status,
        statusText: response.statusText,
        headers,
      });
    }),
  );
});

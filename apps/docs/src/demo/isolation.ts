/**
 * Cross-origin isolation for multi-threaded WASM. A host that sends COOP/COEP (see the `_headers` file the
 * build writes) isolates the page by itself; elsewhere the page registers `coi-sw.js`, a service worker that adds
 * those headers to the site's responses, and reloads once so that the page loads through it.
 */

/** Whether the page is isolated now, and if not, why (for the status line). */
export interface Isolation {
  readonly isolated: boolean;
  readonly how?: 'headers' | 'service worker';
  readonly whyNot?: string;
}

const RELOADED = 'relp-coi-reloaded';

/**
 * Resolves with the page's isolation; may instead reload the page once (then it never resolves). `workerUrl` is
 * the service worker's script, relative to the page.
 */
export async function ensureIsolation(workerUrl: string): Promise<Isolation> {
  const sw = navigator.serviceWorker as ServiceWorkerContainer | undefined;
  const controlled = sw?.controller !== null && sw?.controller !== undefined;
  if (globalThis.crossOriginIsolated) {
    sessionStorage.removeItem(RELOADED);
    return { isolated: true, how: controlled ? 'service worker' : 'headers' };
  }
  if (!window.isSecureContext || sw === undefined) {
    return {
      isolated: false,
      whyNot:
        'the host sends no COOP/COEP headers, and the isolation service worker needs https or localhost',
    };
  }
  try {
    const registration = (await sw.register(workerUrl)) as ServiceWorkerRegistration | undefined;
    if (!registration) {
      return {
        isolated: false,
        whyNot: 'the host sends no COOP/COEP headers, and this browser registered no service worker',
      };
    }
    if (sessionStorage.getItem(RELOADED) !== null) {
      sessionStorage.removeItem(RELOADED);
      return {
        isolated: false,
        whyNot:
          'the host sends no COOP/COEP headers, and the isolation service worker did not take effect after a reload',
      };
    }
    await activated(registration);
    sessionStorage.setItem(RELOADED, '1');
    location.reload();
    return new Promise<never>(() => {});
  } catch (e) {
    return {
      isolated: false,
      whyNot: `the host sends no COOP/COEP headers, and the isolation service worker failed (${e instanceof Error ? e.message : String(e)})`,
    };
  }
}

function activated(registration: ServiceWorkerRegistration): Promise<void> {
  const worker = registration.installing ?? registration.waiting ?? registration.active;
  if (!worker || worker.state === 'activated') return Promise.resolve();
  return new Promise((resolve) => {
    worker.addEventListener('statechange', () => {
      if (worker.state === 'activated') resolve();
    });
  });
}

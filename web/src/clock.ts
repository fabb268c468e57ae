// The server's clock, as /api/me and /api/login tell it: a demo or test server runs
// at a shifted time (`--now`), and the console must date its default periods and
// remaining times by that clock, not by the browser's.
let offsetMs = 0;

/** Remember the server's time as of now (an RFC 3339 string). */
export function syncClock(serverTime: string | null | undefined, localNow: number = Date.now()): void {
  const server = serverTime ? Date.parse(serverTime) : NaN;
  offsetMs = Number.isFinite(server) ? server - localNow : 0;
}

/** The server's time now. */
export function serverNow(): Date {
  return new Date(Date.now() + offsetMs);
}

import { afterEach, describe, expect, it } from 'vitest';
import { serverNow, syncClock } from './clock';

describe('server clock', () => {
  afterEach(() => syncClock(undefined));
  it('follows a server running at a shifted time', () => {
    syncClock('2026-02-14T10:00:00+08:00', Date.now());
    const now = serverNow();
    expect(Math.abs(now.getTime() - Date.parse('2026-02-14T02:00:00Z'))).toBeLessThan(5000);
  });
  it('falls back to the browser clock without a server time', () => {
    syncClock('not a time');
    expect(Math.abs(serverNow().getTime() - Date.now())).toBeLessThan(5000);
  });
});

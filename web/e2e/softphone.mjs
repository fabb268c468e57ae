// The browser softphone against a running hotline server, in headless Chromium whose
// fake microphone plays a tone WAV.
// Usage: node e2e/softphone.mjs <base-url> <user> <password> <tone.wav> <caller-hz>
// Started by tests/softphone_e2e.rs. Prints `softphone: place-call` once the browser is
// registered and the agent signed in (the Rust test then starts the caller), then
// `softphone: heard <hz> <level>` samples of what the page's WebAudio analyser hears,
// `softphone: call <call id>` and `SOFTPHONE OK` after the console transferred the
// caller to the survey.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [base, user, password, wav, callerHzText] = process.argv.slice(2);
if (!wav) {
  console.error('usage: node e2e/softphone.mjs <base-url> <user> <password> <tone.wav> <caller-hz>');
  process.exit(2);
}
const callerHz = Number(callerHzText);
const watchdog = setTimeout(() => {
  console.error('softphone: gave up after 90 s');
  process.exit(3);
}, 90_000);

const profile = mkdtempSync(join(tmpdir(), 'hotline-softphone-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.E2E_CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1360, height: 900 },
  locale: 'zh-CN',
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
    // The microphone: granted without a prompt, a fake device playing the tone.
    '--use-fake-ui-for-media-stream',
    '--use-fake-device-for-media-stream',
    `--use-file-for-fake-audio-capture=${wav}`,
    '--autoplay-policy=no-user-gesture-required',
    // The server's media is on 127.0.0.1: let WebRTC use the loopback interface, and
    // show real host candidates rather than mDNS names.
    '--allow-loopback-in-peer-connection',
    '--disable-features=WebRtcHideLocalIpsWithMdns',
  ],
});
const page = context.pages()[0] ?? (await context.newPage());
page.setDefaultTimeout(15_000);
const errors = [];
page.on('pageerror', (e) => errors.push(String(e)));

function step(text) {
  console.log(`softphone: ${text}`);
}

try {
  await page.goto(base + '/');
  await page.waitForSelector('form.login');
  await page.fill('input[name="user"]', user);
  await page.fill('input[name="password"]', password);
  await page.click('form.login button[type="submit"]');
  await page.waitForSelector(`[data-user="${user}"]`);
  if (!(await page.locator('[data-softphone="enable"]').count())) {
    await page.click('nav.top a[href="/agent"]');
  }
  await page.check('[data-softphone="enable"]');
  await page.waitForSelector('[data-softphone-state="idle"]');
  step('browser registered as the agent\'s phone');
  await page.click('[data-agent="sign_in"]');
  await page.waitForSelector('[data-agent-state="available"]', { timeout: 20_000 });
  step('agent signed in');
  console.log('softphone: place-call');

  await page.waitForSelector('[data-softphone-state="ringing"]', { timeout: 40_000 });
  step('ringing');
  await page.click('[data-softphone="answer"]');
  await page.waitForSelector('[data-softphone-state="talking"]', { timeout: 15_000 });
  step('talking (ICE + DTLS-SRTP up)');

  // What the page hears: sample the analyser for ~6 s.
  let tone = 0;
  for (let i = 0; i < 30; i++) {
    await page.waitForTimeout(200);
    const h = await page.evaluate(() => window.hotlineSoftphone?.heard() ?? null);
    if (h) {
      console.log(`softphone: heard ${h.hz.toFixed(0)} ${h.level.toFixed(3)}`);
      if (Math.abs(h.hz - callerHz) < 40 && h.level > 0.01) tone++;
    }
  }
  step(`caller's tone in ${tone} of 30 samples`);
  const mic = Number(await page.getAttribute('[data-softphone-mic]', 'data-softphone-mic'));
  if (!(mic > 0)) throw new Error(`the microphone meter shows ${mic}`);
  step(`microphone meter ${mic}`);
  // Hold: the server stops sending the caller to the browser (the caller hears the
  // hold music); resume: the caller's tone is back.
  await page.click('[data-softphone="hold"]');
  await page.waitForSelector('[data-softphone="hold"][data-held="yes"]');
  let silent = false;
  for (let i = 0; i < 15 && !silent; i++) {
    await page.waitForTimeout(200);
    const h = await page.evaluate(() => window.hotlineSoftphone?.heard() ?? null);
    silent = !!h && h.level < 0.005;
  }
  if (!silent) throw new Error('the browser still hears the caller while holding');
  step('held: the browser hears nothing');
  await page.click('[data-softphone="hold"]');
  let back = false;
  for (let i = 0; i < 15 && !back; i++) {
    await page.waitForTimeout(200);
    const h = await page.evaluate(() => window.hotlineSoftphone?.heard() ?? null);
    back = !!h && Math.abs(h.hz - callerHz) < 40 && h.level > 0.01;
  }
  if (!back) throw new Error('the caller is not back after resuming');
  step('resumed: the caller\'s tone is back');
  const pop = page.locator('.screen-pop[data-screen-pop]');
  const callId = (await pop.count()) ? await pop.getAttribute('data-screen-pop') : '';
  console.log(`softphone: call ${callId}`);
  // The order form is linked to the call and autosaved on the server, as for a SIP phone.
  await page.fill('textarea[name="description"]', '浏览器话机来电：咨询劳动争议调解。');
  await page.waitForSelector('[data-autosave="saved"]');
  const draft = await page.evaluate(async (id) => (await fetch(`/api/drafts/${encodeURIComponent(id)}`)).ok, callId);
  if (!draft) throw new Error(`no draft on the server for call ${callId}`);
  step('draft autosaved on the server');
  // Blind transfer from the console: the caller goes to the satisfaction survey, the
  // server ends the browser's leg and tells the browser.
  await page.waitForSelector('[data-agent-state="on_call"]');
  await page.click('[data-transfer="survey"]');
  await page.waitForSelector('[data-transfer-result]');
  await page.waitForSelector('[data-softphone-state="idle"]', { timeout: 10_000 });
  step('transferred to the survey from the console; the browser leg ended');
  if (tone < 15) throw new Error(`the page heard the caller's ${callerHz} Hz tone in only ${tone} of 30 samples`);
  if (errors.length) throw new Error(`page errors: ${errors.join('; ')}`);
  console.log('SOFTPHONE OK');
} catch (e) {
  console.error(String(e?.stack ?? e));
  try {
    await page.screenshot({ path: join(profile, '..', 'softphone-failure.png'), fullPage: true });
  } catch {
    /* no screenshot */
  }
  process.exitCode = 1;
} finally {
  clearTimeout(watchdog);
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}

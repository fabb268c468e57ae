// Browser end-to-end test of the consoles against a running hotline server.
// Usage: node e2e/run.mjs <base-url>   (env E2E_SCREENSHOTS: where to write PNGs,
// default ../docs/screenshots; E2E_CHROMIUM: browser path, default /usr/bin/chromium).
// Started by tests/web_e2e.rs with the e2e users it adds to the config. When the agent
// console is ready for the real call it prints `e2e: place-call` (the Rust test then
// starts the SIPp caller) and later `e2e: call-order <order id> <call id>`.
import { chromium } from 'playwright-core';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const base = process.argv[2];
if (!base) {
  console.error('usage: node e2e/run.mjs <base-url>');
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
const shots = resolve(process.env.E2E_SCREENSHOTS ?? join(here, '../../docs/screenshots'));
mkdirSync(shots, { recursive: true });
const watchdog = setTimeout(() => {
  console.error('e2e: gave up after 420 s');
  process.exit(3);
}, 420_000);

const USERS = {
  agent: 'e2e-agent',
  dispatcher: 'e2e-dispatcher',
  aid: 'e2e-aid',
  lixia: 'e2e-lixia',
  callback: 'e2e-callback',
  supervisor: 'e2e-supervisor',
};

const profile = mkdtempSync(join(tmpdir(), 'hotline-e2e-chromium-'));
// A fresh profile (--user-data-dir) each run: Playwright takes it as the persistent
// context's directory.
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
  ],
});
const page = context.pages()[0] ?? (await context.newPage());
page.setDefaultTimeout(15_000);
const consoleErrors = [];
page.on('pageerror', (e) => consoleErrors.push(String(e)));
// Expected 401/404s (not logged in yet, no call center) are fine; a blocked script or
// style is not.
page.on('console', (m) => {
  if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) consoleErrors.push(m.text());
});

/** Poll `fn(arg)` in the page (it may be async: page.evaluate awaits it, unlike
 * waitForFunction) until it is truthy. */
async function until(what, fn, arg, timeoutMs = 15_000) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await page.evaluate(fn, arg).catch(() => false)) return;
    await page.waitForTimeout(300);
  }
  throw new Error(`timed out waiting for ${what}`);
}

function step(text) {
  console.log(`e2e: ${text}`);
}

async function shot(name) {
  await page.waitForTimeout(300);
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

async function login(user, { screenshot } = {}) {
  await page.goto(base + '/');
  await page.waitForSelector('form.login, [data-action="logout"]');
  if (await page.locator('[data-action="logout"]').count()) {
    await page.click('[data-action="logout"]');
  }
  await page.waitForSelector('form.login');
  await page.fill('input[name="user"]', user);
  await page.fill('input[name="password"]', `demo-${user}`);
  if (screenshot) await shot(screenshot);
  await page.click('form.login button[type="submit"]');
  await page.waitForSelector(`[data-user="${user}"]`);
}

async function open(path) {
  await page.click(`nav.top a[href="${path}"]`);
}

/** Select the order in the console's table and wait for its detail. */
async function select(orderId) {
  const row = page.locator(`tr[data-order-id="${orderId}"]`);
  await row.waitFor();
  await row.click();
  await page.waitForSelector(`[data-order-detail="${orderId}"]`);
}

async function allowed() {
  return page.locator('.commands button[data-command]').evaluateAll((bs) => bs.map((b) => b.dataset.command));
}

/** Click a command button; fill its form (if any) and confirm; wait until the order's
 * version changes (or it leaves this user's list) or an error shows. */
async function command(name, fill = async () => {}) {
  const version = await page.locator('[data-order-detail]').getAttribute('data-version');
  await page.click(`.commands button[data-command="${name}"]`);
  const form = page.locator('.commands form.command-form');
  if (await form.count()) {
    await fill(form);
    await form.locator('button[type="submit"]').click();
  }
  await page.waitForFunction(
    (v) => {
      const d = document.querySelector('[data-order-detail]');
      return !d || d.getAttribute('data-version') !== v || document.querySelector('.commands .banner.error');
    },
    version,
    { timeout: 10_000 },
  );
  const error = page.locator('.commands .banner.error');
  if (await error.count()) throw new Error(`${name} failed: ${await error.innerText()}`);
  step(`${name} ok`);
}

async function detailState() {
  return (await page.locator('.detail h3 .state').innerText()).trim();
}

try {
  // 1. Login page, then the agent registers an urgent consultation by the form.
  await login(USERS.agent, { screenshot: 'login' });
  await page.waitForSelector('form.order-form');
  await page.fill('input[name="contact_name"]', '张先生');
  await page.fill('input[name="contact_phone"]', '13812345678');
  await page.selectOption('select[name="category"]', 'consultation');
  await page.selectOption('select[name="urgency"]', 'urgent');
  await page.selectOption('select[name="business_area"]', 'unknown');
  await page.selectOption('select[name="city"]', 'jinan');
  await page.fill('textarea[name="description"]', '邻里纠纷，咨询如何申请人民调解，希望尽快得到答复。');
  // H-8: the hotline registers 咨询/投诉/建议 (案件 only from other channels); the form
  // says the day of receipt is not counted.
  const categories = await page.locator('select[name="category"] option').allInnerTexts();
  if (categories.join('/') !== '咨询/投诉/建议') throw new Error(`hotline categories: ${categories.join('/')}`);
  const rule = await page.locator('[data-deadline-rule]').innerText();
  if (!rule.includes('受理当日不计入')) throw new Error(`the form does not explain the counting: ${rule}`);
  await page.click('[data-action="create-order"]');
  const created = page.locator('[data-created-order]');
  await created.waitFor();
  const orderId = await created.getAttribute('data-created-order');
  const orderNumber = await created.getAttribute('data-created-number');
  if (!/^鲁12348-\d{8}-\d{4}$/.test(orderNumber ?? '')) throw new Error(`no short order number: ${orderNumber}`);
  step(`agent created order ${orderId}, number ${orderNumber} for the caller`);
  await page.locator(`tr[data-order-id="${orderId}"]`).waitFor();

  // 2. Dispatcher: the order waits in the inbox with the number masked; dispatch it.
  await login(USERS.dispatcher);
  await open('/dispatch');
  await select(orderId);
  // Dispatch does not answer the caller: no 回拨.
  if ((await page.locator('[data-call-back]').count()) !== 0) throw new Error('回拨 offered to dispatch');
  await command('dispatch', async (form) => {
    await form.locator('input[name="unit"][value="jinan-legal-aid"]').check();
    await shot('dispatch');
  });

  // 3. The legal-aid centre returns it: not its business.
  await login(USERS.aid);
  await open('/unit');
  await select(orderId);
  await command('return', async (form) => {
    await form.locator('textarea[name="reason"]').fill('不属于法律援助事项，应由属地司法局办理');
  });

  // 4. Dispatcher sees the return reason and re-dispatches to the district bureau.
  await login(USERS.dispatcher);
  await open('/dispatch');
  await select(orderId);
  const reason = await page.locator('.detail .return-reason').innerText();
  if (!reason.includes('不属于法律援助事项')) throw new Error(`return reason not shown: ${reason}`);
  step(`dispatcher sees the return reason: ${reason}`);
  await command('dispatch', async (form) => {
    await form.locator('input[name="unit"][value="jinan-lixia"]').check();
  });

  // 5. The district bureau signs, (starts,) and replies.
  await login(USERS.lixia);
  await open('/unit');
  await select(orderId);
  await command('sign');
  if ((await allowed()).includes('start')) await command('start');
  // H-11, H-12-3: who replies may call the caller back through the system (回拨); this
  // server has no outbound trunk, and says so.
  await page.click(`[data-call-back="${orderId}"] button:has-text("回拨")`);
  const alert = page.locator(`[data-call-back="${orderId}"] [role="alert"]`);
  await alert.waitFor();
  const refusal = await alert.innerText();
  if (!refusal.includes('外呼中继')) throw new Error(`回拨 refusal: ${refusal}`);
  step(`回拨 offered to the replying unit: ${refusal}`);
  const replyText = '经核实，可向所在街道人民调解委员会申请调解，调解免费。';
  const available = await allowed();
  if (available.includes('reply')) {
    await command('reply', async (form) => {
      await form.locator('textarea[name="text"]').fill(replyText);
      await shot('unit');
    });
  } else {
    await command('draft_reply', (form) => form.locator('textarea[name="text"]').fill(replyText));
    await command('review', async () => {});
    await command('send_reviewed_reply');
  }
  if ((await allowed()).includes('feed_back')) {
    await command('feed_back', (form) => form.locator('textarea[name="note"]').fill('已电话告知来电人'));
  }

  // 6. Callback staff: (feed back,) record "satisfied"; the order closes.
  await login(USERS.callback);
  await open('/callback');
  await select(orderId);
  if ((await allowed()).includes('feed_back')) {
    await command('feed_back', (form) => form.locator('textarea[name="note"]').fill('已电话告知来电人'));
  }
  // The urgent order fed back waits for its mandatory callback (H-11): 待回访; its
  // limits read as a bureau writes them, in working days.
  if ((await detailState()) !== '待回访') throw new Error(`urgent order awaiting callback reads ${await detailState()}`);
  const limits = await page.locator(`[data-deadlines="${orderId}"]`).innerText();
  if (!/转办 (\d{4}年)?\d+月\d+日 \d\d:\d\d（1小时）/.test(limits) || !/反馈 (\d{4}年)?\d+月\d+日 24:00（5个工作日）/.test(limits) || !/回访 (\d{4}年)?\d+月\d+日 24:00（3个工作日）/.test(limits)) {
    throw new Error(`limits not in the bureau's words: ${limits}`);
  }
  step(`limits read: ${limits.replace(/\s+/g, ' ')}`);
  await command('record_callback', async (form) => {
    await form.locator('input[name="callback_result"][value="satisfied"]').check();
    await shot('callback');
  });
  await page.waitForFunction(() => document.querySelector('.detail h3 .state')?.textContent?.includes('已办结'));
  step(`order is ${await detailState()}`);

  // 7. A real call. The console user works as agent 1001, whose SIPp phone is
  // registered: sign in, then the SIPp caller (started by the Rust test) presses 2 and is
  // queued to it. The screen-pop shows the masked number, the IVR's category and the
  // previous order of that number; the form is linked to the call and autosaved on the
  // server, survives a reload, and is saved as an order carrying the call id.
  await login(USERS.agent);
  await page.click('[data-agent="sign_in"]');
  await page.waitForSelector('[data-agent-state="available"]', { timeout: 20_000 });
  step('agent 1001 signed in from the console');
  console.log('e2e: place-call');
  const pop = page.locator('.screen-pop[data-screen-pop]');
  await pop.waitFor({ timeout: 60_000 });
  const callId = await pop.getAttribute('data-screen-pop');
  const caller = (await pop.locator('.caller').innerText()).trim();
  if (caller !== '138****5678') throw new Error(`screen-pop should show the masked number, saw ${caller}`);
  const category = (await pop.locator('.category').innerText()).trim();
  if (category !== '投诉') throw new Error(`screen-pop should show the IVR category 投诉, saw ${category}`);
  await pop.locator(`[data-previous-order="${orderId}"]`).waitFor();
  step(`screen-pop for call ${callId}: ${caller} ${category}, previous order ${orderId}`);
  await page.waitForSelector(`[data-linked-call="${callId}"]`);
  if ((await page.inputValue('select[name="category"]')) !== 'complaint') throw new Error('form not prefilled from the IVR');
  await page.waitForSelector('[data-agent-state="on_call"]', { timeout: 20_000 });
  await page.waitForSelector(`[data-call-controls="${callId}"]`);
  await page.fill('input[name="contact_name"]', '李女士');
  await page.fill('input[name="contact_phone"]', '13812345678');
  await page.selectOption('select[name="business_area"]', 'mediation');
  const complaint = '投诉：街道调解委员会未受理其邻里纠纷调解申请，要求说明理由并尽快调解。';
  await page.fill('textarea[name="description"]', complaint);
  await until(
    'the autosaved draft',
    async ({ id, text }) => {
      const r = await fetch(`/api/drafts/${encodeURIComponent(id)}`);
      return r.ok && (await r.json()).fields?.description === text;
    },
    { id: callId, text: complaint },
  );
  await page.waitForSelector('[data-autosave="saved"]');
  step('draft autosaved on the server');
  await shot('agent');
  await page.reload();
  await page.waitForSelector(`[data-linked-call="${callId}"]`, { timeout: 15_000 });
  await page.waitForFunction((text) => document.querySelector('textarea[name="description"]')?.value === text, complaint);
  await page.waitForFunction(() => document.querySelector('.screen-pop .caller')?.textContent === '138****5678');
  step('draft and screen-pop restored after a reload');
  await page.click('[data-action="create-order"]');
  const callOrder = page.locator('[data-created-order]');
  await callOrder.waitFor();
  const callOrderId = await callOrder.getAttribute('data-created-order');
  console.log(`e2e: call-order ${callOrderId} ${callId}`);

  // 8. Transfer the caller to the satisfaction survey from the console; the wrap-up
  // countdown runs, and the agent ends it early.
  // A unit's outside number needs an outbound trunk leg: refused with a clear message,
  // the call stays with the agent.
  await page.selectOption('select[name="transfer_target"]', 'unit:jinan-legal-aid');
  await page.click('[data-transfer="other"]');
  await page.locator('.banner.error', { hasText: '外线暂不可用' }).waitFor();
  await page.waitForSelector('[data-agent-state="on_call"]');
  step('transfer to a unit refused as not available; still on the call');
  await page.click('[data-transfer="survey"]');
  await page.waitForSelector('[data-transfer-result]');
  await page.waitForSelector('[data-wrap-up]', { timeout: 10_000 });
  const left = Number(await page.getAttribute('[data-wrap-up]', 'data-wrap-up'));
  if (!(left > 0 && left <= 30)) throw new Error(`wrap-up countdown should run from 30 s, shows ${left}`);
  step(`transferred to the survey; wrap-up ${left} s left`);
  await shot('agent-wrapup');
  await page.click('[data-agent="end_wrap_up"]');
  await page.waitForSelector('[data-agent-state="available"]', { timeout: 10_000 });
  step('wrap-up ended early');
  // The caller hears the survey, does not answer, and is hung up: the call's record
  // (with its recording) is stored then.
  await until(
    "the call's record",
    async (id) => {
      const r = await fetch('/api/calls?limit=10');
      if (!r.ok) return false;
      const calls = await r.json();
      return calls.some((c) => c.record.call_id === id && c.record.recordings.length > 0);
    },
    callId,
    40_000,
  );
  step('call record with its recording stored');

  // 9. Supervisor: server-side KPIs, the ranking shows the district bureau, the ledger
  // timeline, the masked number, and the call's recording plays.
  await login(USERS.supervisor);
  await open('/supervisor');
  await page.waitForSelector('[data-kpis="server"] [data-kpi="total"]');
  const total = Number(await page.locator('[data-kpi="total"] .big').innerText());
  if (total < 2) throw new Error(`KPI total should count both orders, shows ${total}`);
  step(`KPIs from the server: ${total} orders`);
  await page.locator('tr[data-ranking-unit="jinan-lixia"]').waitFor();
  const weights = await page.locator('[data-ranking-weights]').innerText();
  if (!weights.includes('综合得分权重') || !weights.includes('转办及时率')) throw new Error(`ranking weights not shown: ${weights}`);
  step(`the ranking prints its weights: ${weights}`);
  await page.fill('input[name="ledger_order"]', orderId);
  await page.click('form.filters button[type="submit"]');
  await page.locator('ol.timeline li').first().waitFor();
  // The ledger names people (赵转办), never login ids, and labels in Chinese.
  const timeline = await page.locator('ol.timeline').innerText();
  if (!timeline.includes('赵转办') || !timeline.includes('孙承办') || /e2e-|basically_satisfied|returned|dispatched/.test(timeline)) {
    throw new Error(`timeline shows ids or enum values: ${timeline}`);
  }
  step('the ledger timeline names people in Chinese');
  // A supervisor does not talk to callers: the number is masked until revealed (audited).
  const masked = await page.locator('.detail .phone').innerText();
  if (!/^138\*+5678$/.test(masked)) throw new Error(`supervisor should see a masked number, saw ${masked}`);
  step(`supervisor sees ${masked}`);
  // H-12-4: the console asks why; the reason goes into the order's history and the audit.
  page.once('dialog', (dialog) => dialog.accept('回访核实来电人身份'));
  await page.click('.detail button:has-text("显示号码")');
  await page.waitForFunction(() => document.querySelector('.detail .phone')?.textContent === '13812345678');
  step('reveal_contact shows the number');
  await page.fill('input[name="ledger_order"]', callOrderId);
  await page.click('form.filters button[type="submit"]');
  const audio = page.locator(`[data-order-detail="${callOrderId}"] audio[data-recording="${callId}"]`);
  await audio.waitFor();
  const duration = await audio.evaluate(
    (a) =>
      new Promise((resolve, reject) => {
        a.addEventListener('loadedmetadata', () => resolve(a.duration), { once: true });
        a.addEventListener('error', () => reject(new Error(`audio error ${a.error?.code}`)), { once: true });
        a.preload = 'metadata';
        a.load();
      }),
  );
  if (!(duration > 1)) throw new Error(`the recording should last more than 1 s, lasts ${duration}`);
  // Seek (a Range request) and play muted a moment.
  await audio.evaluate(async (a) => {
    a.muted = true;
    a.currentTime = a.duration / 2;
    await a.play().catch(() => {});
    await new Promise((r) => setTimeout(r, 300));
    a.pause();
  });
  step(`the call's recording plays in the order's detail (${duration.toFixed(1)} s)`);
  await page.click(`[data-play="${callId}"]`);
  await page.locator(`tr[data-call-id="${callId}"] audio[data-recording]`).waitFor();
  await shot('supervisor');

  // 10. Last (it locks this source out): repeated wrong passwords get the delay message.
  await page.click('[data-action="logout"]');
  await page.waitForSelector('form.login');
  let banner = '';
  for (let i = 0; i < 8 && !banner.includes('登录失败次数过多'); i++) {
    await page.fill('input[name="user"]', USERS.agent);
    await page.fill('input[name="password"]', `wrong-${i}`);
    await page.click('form.login button[type="submit"]');
    await page.waitForSelector('form.login .banner.error');
    await page.waitForTimeout(100);
    banner = await page.locator('form.login .banner.error').innerText();
  }
  if (!banner.includes('登录失败次数过多')) throw new Error(`no delay after failed logins: ${banner}`);
  step(`failed logins: ${banner}`);

  if (consoleErrors.length) throw new Error(`page errors: ${consoleErrors.join('; ')}`);
  console.log('E2E OK');
} catch (e) {
  const failure = join(tmpdir(), 'hotline-e2e-failure.png');
  await page.screenshot({ path: failure, fullPage: true }).catch(() => {});
  console.error(`e2e: failure screenshot ${failure}`);
  console.error(`e2e failed at ${page.url()}: ${e?.stack ?? e}`);
  process.exitCode = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
  clearTimeout(watchdog);
}

// Browser test of the public page (/public, no login) at a phone's size against a
// running hotline server. Usage: node e2e/public.mjs <base-url>
// A citizen leaves a consultation (the page solves the proof of work with WebCrypto)
// and reads the query code; the unit (shipped demo user `handler`) answers it through
// the API; the citizen reads the reply with the code and phone and rates it. Prints
// `e2e: code <query code>` and, at the end, `e2e: public ok`.
// (env E2E_SCREENSHOTS: where to write PNGs; E2E_CHROMIUM: browser path.)
import { chromium } from 'playwright-core';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const base = process.argv[2];
if (!base) {
  console.error('usage: node e2e/public.mjs <base-url>');
  process.exit(2);
}
const shots = process.env.E2E_SCREENSHOTS ? resolve(process.env.E2E_SCREENSHOTS) : null;
if (shots) mkdirSync(shots, { recursive: true });
const watchdog = setTimeout(() => {
  console.error('e2e: gave up after 120 s');
  process.exit(3);
}, 120_000);

const PHONE = '13955556666';
const QUESTION = '单位拖欠我两个月工资，老板一直不给，我能申请法律援助吗？';
const ANSWER = '可以。请携带身份证、劳动合同和欠薪证据到济南市法律援助中心申请。';

function check(ok, what) {
  if (!ok) throw new Error(`e2e: ${what}`);
}

async function staff(path, body, session) {
  const resp = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      ...(session ? { Cookie: session.cookie, 'X-CSRF-Token': session.csrf } : {}),
    },
    body: JSON.stringify(body),
  });
  const text = await resp.text();
  check(resp.ok, `${path}: ${resp.status} ${text}`);
  return { resp, json: JSON.parse(text) };
}

const profile = mkdtempSync(join(tmpdir(), 'hotline-public-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.E2E_CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  // A phone: 390 × 844 CSS pixels, touch.
  viewport: { width: 390, height: 844 },
  deviceScaleFactor: 2,
  isMobile: true,
  hasTouch: true,
  locale: 'zh-CN',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
});
let failed = false;
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(20_000);
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) errors.push(m.text());
  });

  await page.goto(`${base}/public`);
  await page.getByText('我要留言').waitFor();
  check(!(await page.getByText('登录').isVisible().catch(() => false)), 'the public page asks for no login');
  // The form fits the phone's width: no horizontal scrolling.
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  check(width <= 390, `page is ${width}px wide on a 390px phone`);

  await page.locator('select[name=category]').selectOption('consultation');
  await page.locator('input[name=name]').fill('刘晓');
  await page.locator('input[name=phone]').fill(PHONE);
  await page.locator('select[name=city]').selectOption('jinan');
  await page.locator('select[name=business_area]').selectOption('legal_aid');
  await page.locator('textarea[name=description]').fill(QUESTION);
  if (shots) await page.screenshot({ path: join(shots, 'public-form.png'), fullPage: true });
  await page.locator('[data-action=submit-message]').click();
  const codeEl = page.locator('[data-query-code]');
  await codeEl.waitFor();
  const code = (await codeEl.getAttribute('data-query-code')) ?? '';
  check(code.startsWith('GD'), `query code shown: ${code}`);
  await page.getByText('提交成功').waitFor();
  console.log(`e2e: code ${code}`);

  // An image is attached; a text file called .png is refused with the reason.
  const png = Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, 0x49, 0x48, 0x44, 0x52]),
    Buffer.alloc(64),
  ]);
  await page.locator('input[name=attachment]').setInputFiles({ name: 'receipt.png', mimeType: 'image/png', buffer: png });
  await page.getByText('已上传：receipt.png').waitFor();
  await page
    .locator('input[name=attachment]')
    .setInputFiles({ name: 'fake.png', mimeType: 'image/png', buffer: Buffer.from('not an image at all') });
  await page.getByText('fake.png：仅支持 JPEG、PNG 图片或 PDF 文件').waitFor();
  if (shots) await page.screenshot({ path: join(shots, 'public-submitted.png'), fullPage: true });

  // Not answered yet.
  await page.locator('[data-action=lookup]').click();
  await page.locator('[data-progress]').waitFor();
  await page.getByText('暂无答复').waitFor();

  // The unit answers (routed to 济南市法律援助中心 by the shipped rule).
  const login = await staff('/api/login', { user: 'handler', password: 'demo-handler' });
  const session = {
    cookie: (login.resp.headers.get('set-cookie') ?? '').split(';')[0],
    csrf: login.json.csrf_token,
  };
  for (const [command, body] of [
    ['sign', {}],
    ['start', {}],
    ['reply', { text: ANSWER }],
  ]) {
    await staff(`/api/orders/${code}/${command}`, body, session);
  }

  // A wrong phone says only "not found".
  await page.locator('input[name=lookup_phone]').fill('13900001111');
  await page.locator('[data-action=lookup]').click();
  await page.getByText('未找到：请核对查询码和手机号').waitFor();
  await page.locator('input[name=lookup_phone]').fill(PHONE);
  await page.locator('[data-action=lookup]').click();
  await page.locator('[data-reply]').waitFor();
  check((await page.locator('[data-reply]').innerText()).includes(ANSWER), 'the reply is shown');
  await page.getByText('已办结').waitFor();
  if (shots) await page.screenshot({ path: join(shots, 'public-reply.png'), fullPage: true });
  await page.locator('[data-action=rate-satisfied]').click();
  await page.locator('[data-thanks]').waitFor();
  check(!(await page.locator('[data-action=rate-satisfied]').isVisible()), 'rated once only');
  check(errors.length === 0, `page errors: ${errors.join('; ')}`);
  console.log('e2e: public ok');
} catch (e) {
  failed = true;
  console.error(String(e?.stack ?? e));
} finally {
  clearTimeout(watchdog);
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);

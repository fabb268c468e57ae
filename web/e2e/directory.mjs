// Browser test of the public directory (W-8) on a phone-sized window, no login: search
// a notary office in Chinese, open it, book the first free slot, read the booking code.
// Usage: node e2e/directory.mjs <base-url> <query>   (env E2E_SCREENSHOTS: where to
// write PNGs; E2E_CHROMIUM: browser path, default /usr/bin/chromium). Prints
// `e2e: booked <code> <slot start>` for tests/directory_web.rs to check in the database.
import { chromium } from 'playwright-core';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const [base, query] = process.argv.slice(2);
if (!base || !query) {
  console.error('usage: node e2e/directory.mjs <base-url> <query>');
  process.exit(2);
}
const shots = resolve(process.env.E2E_SCREENSHOTS ?? mkdtempSync(join(tmpdir(), 'dir-shots-')));
mkdirSync(shots, { recursive: true });
const watchdog = setTimeout(() => {
  console.error('e2e: gave up after 120 s');
  process.exit(3);
}, 120_000);

const profile = mkdtempSync(join(tmpdir(), 'hotline-dir-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.E2E_CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  // A phone: 390 × 844 CSS pixels, touch, mobile viewport.
  viewport: { width: 390, height: 844 },
  deviceScaleFactor: 2,
  isMobile: true,
  hasTouch: true,
  locale: 'zh-CN',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const page = context.pages()[0] ?? (await context.newPage());
page.setDefaultTimeout(15_000);
const errors = [];
page.on('pageerror', (e) => errors.push(String(e)));
page.on('console', (m) => {
  if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) errors.push(m.text());
});

function fail(message) {
  console.error(`e2e: FAILED: ${message}`);
  process.exitCode = 1;
}

async function noSideways(where) {
  const [scroll, inner] = await page.evaluate(() => [document.documentElement.scrollWidth, innerWidth]);
  if (scroll > inner + 1) fail(`${where}: the page is ${scroll}px wide on a ${inner}px phone`);
}

try {
  await page.goto(`${base}/directory`);
  await page.getByPlaceholder('机构或人员名称、地区、专长，如：公证处').fill(query);
  await page.locator('select[name=city]').selectOption('jinan');
  await page.locator('select[name=kind]').selectOption('notary_office');
  await page.locator('[data-action=search]').tap();
  const hit = page.locator('.dir-item', { hasText: query }).first();
  await hit.waitFor();
  const listed = await page.locator('.dir-item').count();
  console.log(`e2e: ${listed} found`);
  await noSideways('results');
  await page.screenshot({ path: join(shots, 'directory-search-phone.png'), fullPage: true });
  await hit.tap();
  const title = await page.locator('[data-entry-name]').textContent();
  if (!title.includes(query)) fail(`opened ${title}, not ${query}`);
  const licence = await page.locator('[data-licence]').textContent();
  if (licence !== '正常执业') fail(`licence shows ${licence}`);
  if (!(await page.getByText('群众满意窗口').isVisible())) fail('the commendation is not shown');
  const slot = page.locator('button[data-slot]:not([disabled])').first();
  await slot.waitFor();
  const start = await slot.getAttribute('data-slot');
  await slot.tap();
  await page.locator('input[name=name]').fill('张示例');
  await page.locator('input[name=phone]').fill('13800138000');
  await page.locator('textarea[name=matter]').fill('办理遗嘱公证');
  await page.locator('[data-action=book]').tap();
  const code = (await page.locator('[data-code]').textContent()).trim();
  if (!/^[2-9A-Z]{8}$/.test(code)) fail(`booking code ${code}`);
  if (!(await page.getByText('预约成功').isVisible())) fail('no 预约成功');
  await noSideways('booked');
  await page.screenshot({ path: join(shots, 'directory-booked-phone.png'), fullPage: true });
  console.log(`e2e: booked ${code} ${start}`);
  if (errors.length) fail(`page errors: ${errors.join('; ')}`);
} catch (e) {
  fail(String(e?.stack ?? e));
  await page.screenshot({ path: join(shots, 'directory-failure.png'), fullPage: true }).catch(() => {});
} finally {
  clearTimeout(watchdog);
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}

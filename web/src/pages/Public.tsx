// The public page of the 12348 web channel (W-2, W-9): no login. A citizen leaves a
// consultation, complaint or suggestion (the proof of work is solved here with
// WebCrypto), gets a query code, and later reads the progress and the reply with the
// code and the phone, and rates the answer.
import { useEffect, useState } from 'preact/hooks';
import { AREA_LABELS } from '../format';

interface City {
  id: string;
  name: string;
  counties: { id: string; name: string }[];
}

interface Submitted {
  query_code: string;
  number: string | null;
  duplicate: boolean;
  queued: boolean;
}

interface CitizenOrder {
  query_code: string;
  number: string | null;
  progress: string;
  progress_text: string;
  city: string;
  received_at: string;
  description: string;
  reply: string | null;
  satisfaction: string | null;
  can_rate: boolean;
}

class PublicError extends Error {}

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const resp = await fetch(path, {
    method,
    headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    if (resp.status === 404) throw new PublicError('未找到：请核对查询码和手机号');
    if (resp.status === 429) throw new PublicError('操作过于频繁，请稍后再试');
    throw new PublicError((data as { message?: string }).message ?? `提交失败（${resp.status}）`);
  }
  return data as T;
}

function zeroBits(digest: Uint8Array): number {
  let bits = 0;
  for (const byte of digest) {
    if (byte === 0) {
      bits += 8;
      continue;
    }
    bits += Math.clz32(byte) - 24;
    break;
  }
  return bits;
}

/** Find a nonce whose SHA-256(challenge:nonce) has `bits` leading zero bits. */
export async function solve(challenge: string, bits: number): Promise<string> {
  const enc = new TextEncoder();
  for (let n = 0; n < 1 << 26; n++) {
    const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', enc.encode(`${challenge}:${n}`)));
    if (zeroBits(digest) >= bits) return String(n);
  }
  throw new PublicError('验证失败，请刷新页面重试');
}

const KINDS: [string, string][] = [
  ['consultation', '咨询'],
  ['complaint', '投诉'],
  ['suggestion', '建议'],
];

const AREAS = [
  'legal_aid',
  'lawyer',
  'notary',
  'judicial_appraisal',
  'mediation',
  'grassroots_legal_service',
  'legal_education',
  'unknown',
];

/** Upload one attachment of an order; the server judges its type by the content. */
async function upload(code: string, phone: string, file: File): Promise<void> {
  const resp = await fetch(`/api/public/orders/${encodeURIComponent(code)}/attachments`, {
    method: 'POST',
    headers: { 'Content-Type': file.type || 'application/octet-stream', 'X-Contact-Phone': phone },
    body: file,
  });
  if (resp.ok) return;
  if (resp.status === 413) throw new PublicError(`${file.name}：文件超过 5 MB`);
  if (resp.status === 415 || resp.status === 422)
    throw new PublicError(`${file.name}：仅支持 JPEG、PNG 图片或 PDF 文件`);
  if (resp.status === 429) throw new PublicError('操作过于频繁，请稍后再试');
  throw new PublicError(`${file.name}：上传失败（${resp.status}）`);
}

function Attachments({ code, phone }: { code: string; phone: string }) {
  const [sent, setSent] = useState<string[]>([]);
  const [error, setError] = useState('');
  const onPick = async (e: Event) => {
    const input = e.target as HTMLInputElement;
    setError('');
    for (const file of Array.from(input.files ?? [])) {
      try {
        await upload(code, phone, file);
        setSent((s) => [...s, file.name]);
      } catch (err) {
        setError(err instanceof Error ? err.message : String(err));
      }
    }
    input.value = '';
  };
  return (
    <div class="public-form" data-section="attachments">
      <label>
        添加附件（图片或 PDF，每个不超过 5 MB，可不添加）
        <input type="file" name="attachment" accept="image/jpeg,image/png,application/pdf" multiple onChange={onPick} />
      </label>
      {sent.length > 0 && <p data-uploaded>已上传：{sent.join('、')}</p>}
      {error && <p class="error" role="alert">{error}</p>}
    </div>
  );
}

function LeaveMessage({ onDone }: { onDone: (code: string, phone: string) => void }) {
  const [cities, setCities] = useState<City[]>([]);
  const [form, setForm] = useState({
    name: '',
    phone: '',
    city: '',
    county: '',
    business_area: 'unknown',
    category: 'consultation',
    description: '',
  });
  const [busy, setBusy] = useState('');
  const [error, setError] = useState('');
  const [done, setDone] = useState<Submitted | null>(null);
  useEffect(() => {
    call<City[]>('GET', '/api/public/cities')
      .then((list) => {
        setCities(list);
        setForm((f) => ({ ...f, city: f.city || (list[0]?.id ?? '') }));
      })
      .catch((e) => setError(String(e.message ?? e)));
  }, []);
  const set = (key: keyof typeof form) => (e: Event) =>
    setForm({ ...form, [key]: (e.target as HTMLInputElement).value });
  const submit = async (e: Event) => {
    e.preventDefault();
    setError('');
    try {
      setBusy('正在进行安全验证…');
      const challenge = await call<{ challenge: string; difficulty_bits: number }>('GET', '/api/public/challenge');
      const nonce = await solve(challenge.challenge, challenge.difficulty_bits);
      setBusy('正在提交…');
      const body: Record<string, unknown> = {
        channel: 'web',
        name: form.name,
        phone: form.phone,
        city: form.city,
        business_area: form.business_area,
        category: form.category,
        description: form.description,
        challenge: challenge.challenge,
        nonce,
      };
      if (form.county) body.county = form.county;
      const result = await call<Submitted>('POST', '/api/public/orders', body);
      setDone(result);
      onDone(result.query_code, form.phone);
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy('');
    }
  };
  if (done)
    return (
      <section class="card" data-section="submitted">
        <h2>{done.duplicate ? '您已提交过相同的问题' : '提交成功'}</h2>
        <p>请保存查询码，凭查询码和手机号查看办理进度和答复：</p>
        <p class="mono code" data-query-code={done.query_code}>
          {done.query_code}
        </p>
        {done.number && <p class="muted small">工单编号：{done.number}</p>}
        {done.queued && <p class="muted small">系统繁忙，您的留言已保存，稍后即可查询。</p>}
        {!done.queued && <Attachments code={done.query_code} phone={form.phone} />}
      </section>
    );
  const city = cities.find((c) => c.id === form.city);
  return (
    <form class="card public-form" onSubmit={submit} data-section="leave-message">
      <h2>我要留言</h2>
      <label>
        类型
        <select value={form.category} onChange={set('category')} name="category">
          {KINDS.map(([v, t]) => (
            <option key={v} value={v}>
              {t}
            </option>
          ))}
        </select>
      </label>
      <label>
        姓名
        <input name="name" value={form.name} onInput={set('name')} required maxLength={50} />
      </label>
      <label>
        手机号
        <input name="phone" type="tel" inputMode="tel" value={form.phone} onInput={set('phone')} required />
      </label>
      <label>
        所在城市
        <select name="city" value={form.city} onChange={(e) => setForm({ ...form, city: (e.target as HTMLSelectElement).value, county: '' })}>
          {cities.map((c) => (
            <option key={c.id} value={c.id}>
              {c.name}
            </option>
          ))}
        </select>
      </label>
      {city && city.counties.length > 0 && (
        <label>
          区县（可不选）
          <select name="county" value={form.county} onChange={set('county')}>
            <option value="">不清楚</option>
            {city.counties.map((c) => (
              <option key={c.id} value={c.id}>
                {c.name}
              </option>
            ))}
          </select>
        </label>
      )}
      <label>
        业务类别
        <select name="business_area" value={form.business_area} onChange={set('business_area')}>
          {AREAS.map((a) => (
            <option key={a} value={a}>
              {a === 'unknown' ? '不清楚' : (AREA_LABELS[a] ?? a)}
            </option>
          ))}
        </select>
      </label>
      <label>
        问题描述
        <textarea name="description" rows={5} value={form.description} onInput={set('description')} required maxLength={2000} />
      </label>
      {error && <p class="error" role="alert">{error}</p>}
      <button type="submit" class="primary" disabled={busy !== ''} data-action="submit-message">
        {busy || '提交'}
      </button>
    </form>
  );
}

function Lookup({ initial }: { initial: { code: string; phone: string } }) {
  const [code, setCode] = useState(initial.code);
  const [phone, setPhone] = useState(initial.phone);
  const [order, setOrder] = useState<CitizenOrder | null>(null);
  const [error, setError] = useState('');
  const [thanks, setThanks] = useState('');
  useEffect(() => {
    setCode(initial.code);
    setPhone(initial.phone);
  }, [initial.code, initial.phone]);
  const look = async (e?: Event) => {
    e?.preventDefault();
    setError('');
    try {
      setOrder(await call<CitizenOrder>('POST', '/api/public/orders/status', { query_code: code.trim(), phone }));
    } catch (err) {
      setOrder(null);
      setError(err instanceof Error ? err.message : String(err));
    }
  };
  const rate = async (rating: 'satisfied' | 'dissatisfied') => {
    setError('');
    try {
      setOrder(await call<CitizenOrder>('POST', '/api/public/orders/rate', { query_code: code.trim(), phone, rating }));
      setThanks('感谢您的评价！');
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    }
  };
  return (
    <section class="card public-form" data-section="lookup">
      <h2>查询办理结果</h2>
      <form onSubmit={look}>
        <label>
          查询码
          <input name="query_code" value={code} onInput={(e) => setCode((e.target as HTMLInputElement).value)} required />
        </label>
        <label>
          手机号
          <input name="lookup_phone" type="tel" value={phone} onInput={(e) => setPhone((e.target as HTMLInputElement).value)} required />
        </label>
        <button type="submit" data-action="lookup">
          查询
        </button>
      </form>
      {error && <p class="error" role="alert">{error}</p>}
      {order && (
        <div class="result" data-progress={order.progress}>
          <p>
            办理状态：<strong>{order.progress_text}</strong>
          </p>
          <p class="muted small">
            {order.city} · 受理时间 {new Date(order.received_at).toLocaleString('zh-CN', { timeZone: 'Asia/Shanghai' })}
          </p>
          <p class="pre">{order.description}</p>
          {order.reply ? (
            <div class="reply" data-reply>
              <h3>答复</h3>
              <p class="pre">{order.reply}</p>
            </div>
          ) : (
            <p class="muted">暂无答复，请耐心等待。</p>
          )}
          {order.can_rate && (
            <p class="rate">
              您对答复是否满意？
              <button type="button" class="primary" onClick={() => rate('satisfied')} data-action="rate-satisfied">
                满意
              </button>
              <button type="button" onClick={() => rate('dissatisfied')} data-action="rate-dissatisfied">
                不满意
              </button>
            </p>
          )}
          {thanks && <p data-thanks>{thanks}</p>}
        </div>
      )}
    </section>
  );
}

export function PublicPage() {
  const [last, setLast] = useState({ code: '', phone: '' });
  useEffect(() => {
    document.title = '12348 山东法网 · 法律咨询留言';
  }, []);
  return (
    <div class="public">
      <header class="public-head">
        <strong>12348 山东法网</strong>
        <span>公共法律服务 · 在线留言</span>
      </header>
      <main class="public-main">
        <LeaveMessage onDone={(code, phone) => setLast({ code, phone })} />
        <Lookup initial={last} />
      </main>
    </div>
  );
}

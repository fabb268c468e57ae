// Agent workspace: sign in / out / pause, live screen-pop from the SSE stream, and the
// draft work-order form (TK-FIELDS) that creates and submits an order.

import { useEffect, useState } from 'preact/hooks';
import { api, isMissing, post, type Me, type Order } from '../api';
import { ErrorBanner, OrderConsole, Section, errorText, useUnits } from '../components';
import { AGENT_STATE_LABELS, AREA_LABELS, CATEGORY_LABELS, CHANNEL_LABELS, URGENCY_LABELS, label } from '../format';

interface ScreenPop {
  call_id: string;
  agent?: string;
  caller_masked?: string;
  city?: string;
  category?: string;
  draft_order_id?: string | null;
  previous_orders?: string[];
}

interface OrderForm {
  contact_name: string;
  contact_phone: string;
  category: string;
  urgency: string;
  business_area: string;
  units: string[];
  description: string;
  remarks: string;
  channel: string;
  city: string;
  call_id: string | null;
  received_at: string;
}

const DRAFT_KEY = 'hotline.agent.draft';

function blankForm(city: string): OrderForm {
  return {
    contact_name: '',
    contact_phone: '',
    category: 'consultation',
    urgency: 'normal',
    business_area: 'unknown',
    units: [],
    description: '',
    remarks: '',
    channel: 'phone',
    city,
    call_id: null,
    received_at: '',
  };
}

function newIdempotencyKey(): string {
  return typeof crypto !== 'undefined' && 'randomUUID' in crypto
    ? crypto.randomUUID()
    : `${Date.now()}-${Math.random().toString(16).slice(2)}`;
}

function AgentStatus({ me, liveState }: { me: Me; liveState: string | null }) {
  const [state, setState] = useState<string | null>(null);
  const [reason, setReason] = useState('小休');
  const [missing, setMissing] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const act = async (action: 'sign_in' | 'sign_out' | 'pause') => {
    setError(null);
    try {
      const r = await post<{ state?: string } | undefined>(
        `/api/agents/${encodeURIComponent(me.id)}/${action}`,
        action === 'pause' ? { reason } : {},
      );
      setState(r?.state ?? { sign_in: 'idle', sign_out: 'signed_out', pause: 'paused' }[action]);
    } catch (e) {
      if (isMissing(e)) setMissing(true);
      else setError(e);
    }
  };
  const shown = liveState ?? state;
  return (
    <Section title="坐席状态" extra={<span class="chip big-chip">{shown ? label(AGENT_STATE_LABELS, shown) : '未知'}</span>}>
      <div class="buttons">
        <button type="button" data-agent="sign_in" onClick={() => act('sign_in')}>
          签到
        </button>
        <button type="button" data-agent="sign_out" onClick={() => act('sign_out')}>
          签退
        </button>
        <select name="pause_reason" value={reason} onChange={(e) => setReason(e.currentTarget.value)}>
          <option>小休</option>
          <option>用餐</option>
          <option>培训</option>
          <option>会议</option>
        </select>
        <button type="button" data-agent="pause" onClick={() => act('pause')}>
          小休
        </button>
      </div>
      {missing && <p class="muted">坐席签到接口暂不可用（呼叫中心未启用）。</p>}
      <ErrorBanner error={error} />
    </Section>
  );
}

function ScreenPopPanel(props: { pop: ScreenPop | null; live: 'connecting' | 'open' | 'unavailable'; onUse: (p: ScreenPop) => void }) {
  const units = useUnits();
  const p = props.pop;
  return (
    <Section
      title="来电弹屏"
      extra={
        <span class={`chip live-${props.live}`}>
          {props.live === 'open' ? '实时连接' : props.live === 'connecting' ? '连接中…' : '实时事件不可用'}
        </span>
      }
    >
      {!p ? (
        <p class="muted" data-screen-pop="none">
          {props.live === 'unavailable' ? '实时事件流（/api/events）暂不可用，可直接填写工单。' : '等待来电…'}
        </p>
      ) : (
        <div class="screen-pop" data-screen-pop={p.call_id}>
          <div class="big mono">{p.caller_masked ?? '未知号码'}</div>
          <div>
            {units.find((u) => u.id === p.city)?.name ?? p.city ?? '—'} · {label(CATEGORY_LABELS, p.category)}
          </div>
          <div class="muted">
            历史工单：{p.previous_orders && p.previous_orders.length > 0 ? p.previous_orders.join('、') : '无'}
          </div>
          <button type="button" class="primary" onClick={() => props.onUse(p)}>
            据此填写工单
          </button>
        </div>
      )}
    </Section>
  );
}

function OrderFormPanel(props: { me: Me; prefill: ScreenPop | null; onCreated: (o: Order) => void }) {
  const units = useUnits();
  const defaultCity = units.find((u) => u.id === props.me.unit && u.kind === 'city') ? props.me.unit : 'jinan';
  const [form, setForm] = useState<OrderForm>(() => {
    try {
      const saved = localStorage.getItem(DRAFT_KEY);
      if (saved) return { ...blankForm(defaultCity), ...(JSON.parse(saved) as Partial<OrderForm>) };
    } catch {
      /* a corrupt draft is dropped */
    }
    return blankForm(defaultCity);
  });
  const [key, setKey] = useState(newIdempotencyKey);
  const [error, setError] = useState<unknown>(null);
  const [created, setCreated] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  // The draft is kept while the call goes on, so a reload does not lose it.
  useEffect(() => localStorage.setItem(DRAFT_KEY, JSON.stringify(form)), [form]);
  useEffect(() => {
    const p = props.prefill;
    if (p) {
      setForm((f) => ({
        ...f,
        call_id: p.call_id,
        city: p.city ?? f.city,
        category: p.category && p.category in CATEGORY_LABELS ? p.category : f.category,
      }));
    }
  }, [props.prefill]);
  const set = (patch: Partial<OrderForm>) => setForm({ ...form, ...patch });
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const body: Record<string, unknown> = { ...form };
      if (!form.received_at) delete body.received_at;
      else body.received_at = new Date(form.received_at).toISOString();
      const order = await api<Order>('POST', '/api/orders', body, { 'Idempotency-Key': key });
      setCreated(order.id);
      localStorage.removeItem(DRAFT_KEY);
      setForm(blankForm(form.city));
      setKey(newIdempotencyKey());
      props.onCreated(order);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const cityUnits = units.filter((u) => u.kind === 'city');
  const options = (m: Record<string, string>) =>
    Object.entries(m).map(([k, v]) => (
      <option key={k} value={k}>
        {v}
      </option>
    ));
  return (
    <Section title="工单登记" extra={form.call_id ? <span class="chip">通话 {form.call_id}</span> : null}>
      <form class="order-form" onSubmit={submit}>
        <label>
          来电人姓名
          <input name="contact_name" value={form.contact_name} onInput={(e) => set({ contact_name: e.currentTarget.value })} />
        </label>
        <label>
          联系电话
          <input
            name="contact_phone"
            value={form.contact_phone}
            inputMode="tel"
            onInput={(e) => set({ contact_phone: e.currentTarget.value })}
            required
          />
        </label>
        <label>
          诉求类别
          <select name="category" value={form.category} onChange={(e) => set({ category: e.currentTarget.value })}>
            {options(CATEGORY_LABELS)}
          </select>
        </label>
        <label>
          紧急程度
          <select name="urgency" value={form.urgency} onChange={(e) => set({ urgency: e.currentTarget.value })}>
            {options(URGENCY_LABELS)}
          </select>
        </label>
        <label>
          问题分类
          <select name="business_area" value={form.business_area} onChange={(e) => set({ business_area: e.currentTarget.value })}>
            {options(AREA_LABELS)}
          </select>
        </label>
        <label>
          受理渠道
          <select name="channel" value={form.channel} onChange={(e) => set({ channel: e.currentTarget.value })}>
            {options(CHANNEL_LABELS)}
          </select>
        </label>
        <label>
          所属城市
          <select name="city" value={form.city} onChange={(e) => set({ city: e.currentTarget.value })}>
            {cityUnits.length === 0 ? <option value={form.city}>{form.city}</option> : null}
            {cityUnits.map((u) => (
              <option key={u.id} value={u.id}>
                {u.name}
              </option>
            ))}
          </select>
        </label>
        {form.channel !== 'phone' && (
          <label>
            受理时间（其他渠道）
            <input
              type="datetime-local"
              name="received_at"
              value={form.received_at}
              onInput={(e) => set({ received_at: e.currentTarget.value })}
            />
          </label>
        )}
        <label class="wide">
          涉及单位
          <select
            name="units"
            multiple
            size={3}
            onChange={(e) => set({ units: Array.from(e.currentTarget.selectedOptions).map((o) => o.value) })}
          >
            {units
              .filter((u) => u.kind !== 'province')
              .map((u) => (
                <option key={u.id} value={u.id} selected={form.units.includes(u.id)}>
                  {u.name}
                </option>
              ))}
          </select>
        </label>
        <label class="wide">
          诉求描述
          <textarea
            name="description"
            rows={4}
            value={form.description}
            onInput={(e) => set({ description: e.currentTarget.value })}
            required
          />
        </label>
        <label class="wide">
          备注
          <textarea name="remarks" rows={2} value={form.remarks} onInput={(e) => set({ remarks: e.currentTarget.value })} />
        </label>
        <div class="wide buttons">
          <button type="submit" class="primary" disabled={busy} data-action="create-order">
            保存并提交工单
          </button>
          <button type="button" onClick={() => setForm(blankForm(defaultCity))}>
            清空
          </button>
        </div>
      </form>
      {error ? <div class="banner error" role="alert">{errorText(error)}</div> : null}
      {created && (
        <div class="banner ok" data-created-order={created}>
          工单 <span class="mono">{created}</span> 已创建并提交
        </div>
      )}
    </Section>
  );
}

export function AgentWorkspace({ me }: { me: Me }) {
  const [pop, setPop] = useState<ScreenPop | null>(null);
  const [prefill, setPrefill] = useState<ScreenPop | null>(null);
  const [live, setLive] = useState<'connecting' | 'open' | 'unavailable'>('connecting');
  const [liveState, setLiveState] = useState<string | null>(null);
  const [refresh, setRefresh] = useState(0);
  useEffect(() => {
    if (typeof EventSource === 'undefined') {
      setLive('unavailable');
      return;
    }
    const es = new EventSource('/api/events');
    es.onopen = () => setLive('open');
    es.onerror = () => {
      // A 404 (no call center yet) closes the stream for good; a dropped connection
      // reconnects by itself.
      if (es.readyState === EventSource.CLOSED) setLive('unavailable');
      else setLive('connecting');
    };
    es.addEventListener('call_offered', (ev) => {
      try {
        const p = JSON.parse((ev as MessageEvent).data) as ScreenPop;
        if (!p.agent || p.agent === me.id) setPop(p);
      } catch {
        /* malformed event ignored */
      }
    });
    es.addEventListener('agent_state', (ev) => {
      try {
        const s = JSON.parse((ev as MessageEvent).data) as { agent?: string; id?: string; state?: string };
        if ((s.agent ?? s.id) === me.id && s.state) setLiveState(s.state);
      } catch {
        /* malformed event ignored */
      }
    });
    return () => es.close();
  }, [me.id]);
  return (
    <div class="console agent">
      <div class="two-col">
        <div>
          <AgentStatus me={me} liveState={liveState} />
          <ScreenPopPanel pop={pop} live={live} onUse={setPrefill} />
        </div>
        <OrderFormPanel me={me} prefill={prefill} onCreated={() => setRefresh((n) => n + 1)} />
      </div>
      <OrderConsole me={me} title="近期工单" baseQuery={{ per_page: '20' }} showFilters={false} refreshKey={refresh} />
    </div>
  );
}


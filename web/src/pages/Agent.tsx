// Agent workspace: sign in / out / pause for the user's queue agent (`me.agent`), the
// live screen-pop from the SSE stream (masked number, city, IVR category and urgency,
// previous orders of the number), the draft work-order form (TK-FIELDS) linked to the
// call and autosaved on the server while the call goes on, transfer buttons during the
// call and the wrap-up countdown after it; the browser softphone (`../softphone.tsx`).

import { useEffect, useRef, useState } from 'preact/hooks';
import { api, get, isMissing, post, put, type Me, type Order, type QueueState } from '../api';
import { ErrorBanner, OrderConsole, Section, errorText, unitName, useUnits } from '../components';
import { Softphone } from '../softphone';
import {
  AGENT_STATE_LABELS,
  AREA_LABELS,
  CATEGORY_LABELS,
  DEADLINE_RULE,
  categoryOptions,
  CHANNEL_LABELS,
  STATE_LABELS,
  URGENCY_LABELS,
  agentStateExplanation,
  agentStateName,
  formatDateTime,
  label,
  localDeadline,
} from '../format';

interface ScreenPop {
  call_id: string;
  agent?: string;
  caller_masked?: string;
  city?: string | null;
  category?: string;
  urgency?: string;
  previous_orders?: string[];
  /** Rebuilt from the queue snapshot after a reload (no event details). */
  restored?: boolean;
}

interface AgentLive {
  state: string;
  call_id: string | null;
  /** End of wrap-up on this browser's clock (ms). */
  untilMs: number | null;
  /** Why the state last changed (`registration_lost`, `restored` …), when known. */
  reason?: string | null;
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

/** Drafts of orders taken without a call (web, WeChat …) stay in this browser. */
const DRAFT_KEY = 'hotline.agent.draft';
/** The last screen-pop (masked number only), so a reload during the call shows it. */
const POP_KEY = 'hotline.agent.pop';
/** Autosave this long after the last keystroke. */
const AUTOSAVE_MS = 600;

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

const draftUrl = (callId: string) => `/api/drafts/${encodeURIComponent(callId)}`;

function AgentStatus(props: { agentId: string; live: AgentLive | null; missing: boolean; onChanged: () => void }) {
  const [reason, setReason] = useState('小休');
  const [error, setError] = useState<unknown>(null);
  const act = async (action: 'sign_in' | 'sign_out' | 'pause' | 'unpause') => {
    setError(null);
    try {
      await post(`/api/agents/${encodeURIComponent(props.agentId)}/${action}`, action === 'pause' ? { reason } : {});
      props.onChanged();
    } catch (e) {
      setError(e);
    }
  };
  const state = props.live?.state ?? '';
  const why = agentStateExplanation(state, props.live?.reason);
  return (
    <Section
      title={`坐席状态 · 分机 ${props.agentId}`}
      extra={
        <span class="chip big-chip" data-agent-state={state}>
          {state ? label(AGENT_STATE_LABELS, state) : '未知'}
        </span>
      }
    >
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
        <button type="button" data-agent="unpause" onClick={() => act('unpause')}>
          恢复
        </button>
      </div>
      {why && (
        <p class="notice" data-agent-why>
          {why}
        </p>
      )}
      {props.missing && <p class="muted">坐席签到接口暂不可用（呼叫中心未启用）。</p>}
      <ErrorBanner error={error} />
    </Section>
  );
}

/** The caller's previous orders (ids from the screen-pop), read one by one. */
function PreviousOrders(props: { ids: string[] }) {
  const [orders, setOrders] = useState<(Order | string)[]>([]);
  useEffect(() => {
    let cancelled = false;
    Promise.all(
      props.ids.slice(0, 5).map((id) =>
        get<Order>(`/api/orders/${encodeURIComponent(id)}`).catch(() => id as Order | string),
      ),
    ).then((list) => !cancelled && setOrders(list));
    return () => {
      cancelled = true;
    };
  }, [props.ids.join(',')]);
  if (props.ids.length === 0) return <div class="muted" data-previous-orders="0">历史工单：无</div>;
  return (
    <div data-previous-orders={props.ids.length}>
      <div class="muted">历史工单（同一号码，共 {props.ids.length} 件）：</div>
      <ul class="previous">
        {orders.map((o) =>
          typeof o === 'string' ? (
            <li key={o} data-previous-order={o} class="mono">
              {o}
            </li>
          ) : (
            <li key={o.id} data-previous-order={o.id}>
              <span class="mono">{o.number ?? o.id}</span> {label(CATEGORY_LABELS, o.fields.category)} ·{' '}
              {label(STATE_LABELS, o.state)} · {formatDateTime(o.fields.received_at as string | undefined)}
            </li>
          ),
        )}
      </ul>
    </div>
  );
}

function ScreenPopPanel(props: { pop: ScreenPop | null; live: 'connecting' | 'open' | 'unavailable' }) {
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
          <div class="big mono caller" data-caller={p.caller_masked ?? ''}>
            {p.caller_masked ?? (p.restored ? '（刷新后号码不再显示）' : '未知号码')}
          </div>
          <div>
            <span class="city">{p.city ? unitName(units, p.city) : '—'}</span> ·{' '}
            <span class="category" data-category={p.category ?? ''}>
              {label(CATEGORY_LABELS, p.category)}
            </span>
            {p.urgency === 'urgent' ? <b class="urgent"> 紧急</b> : <span class="muted"> · {label(URGENCY_LABELS, p.urgency)}</span>}
          </div>
          <div class="muted small mono">通话 {p.call_id}</div>
          {p.previous_orders && <PreviousOrders ids={p.previous_orders} />}
        </div>
      )}
    </Section>
  );
}

/** Transfer buttons during a call; the wrap-up countdown after it. */
function CallControls(props: { agentId: string; live: AgentLive | null; onChanged: () => void }) {
  const units = useUnits();
  const [target, setTarget] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [result, setResult] = useState<string | null>(null);
  // Re-render twice a second during wrap-up; the countdown reads the clock itself.
  const [, setBeat] = useState(0);
  const state = props.live?.state ?? '';
  const callId = state === 'on_call' ? props.live?.call_id : null;
  useEffect(() => {
    if (state !== 'wrap_up') return;
    const t = setInterval(() => setBeat((n) => n + 1), 500);
    return () => clearInterval(t);
  }, [state]);
  useEffect(() => setError(null), [callId, state]);
  const transfer = async (to: string, text: string) => {
    if (!callId || !to) return;
    setBusy(true);
    setError(null);
    setResult(null);
    try {
      await post(`/api/calls/${encodeURIComponent(callId)}/transfer`, { to });
      setResult(`已${text}`);
      props.onChanged();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const endWrapUp = async () => {
    setError(null);
    try {
      await post(`/api/agents/${encodeURIComponent(props.agentId)}/end_wrap_up`, {});
      props.onChanged();
    } catch (e) {
      setError(e);
    }
  };
  const untilMs = props.live?.untilMs ?? null;
  const left = state === 'wrap_up' && untilMs !== null ? Math.max(0, Math.ceil((untilMs - Date.now()) / 1000)) : null;
  const cities = units.filter((u) => u.kind === 'city');
  const handling = units.filter((u) => u.kind === 'institution' || u.kind === 'county');
  return (
    <Section title="通话控制">
      {callId ? (
        <div class="call-controls" data-call-controls={callId}>
          <div class="buttons">
            <button
              type="button"
              class="primary"
              data-transfer="survey"
              disabled={busy}
              onClick={() => transfer('survey', '转满意度评价')}
            >
              转满意度评价
            </button>
          </div>
          <div class="buttons">
            <select name="transfer_target" value={target} onChange={(e) => setTarget(e.currentTarget.value)}>
              <option value="">选择城市或单位…</option>
              <optgroup label="其他城市（排队）">
                {cities.map((u) => (
                  <option key={u.id} value={`queue:${u.id}`}>
                    {u.name}
                  </option>
                ))}
              </optgroup>
              <optgroup label="承办单位（外线）">
                {handling.map((u) => (
                  <option key={u.id} value={`unit:${u.id}`}>
                    {u.name}
                  </option>
                ))}
              </optgroup>
            </select>
            <button type="button" data-transfer="other" disabled={busy || !target} onClick={() => transfer(target, '转接')}>
              转其他城市/单位
            </button>
          </div>
        </div>
      ) : state === 'wrap_up' ? (
        <div class="wrap-up" data-wrap-up={left ?? ''}>
          <div class="big">{left === null ? '话后整理' : `${left} 秒`}</div>
          <div class="muted">话后整理中，结束后自动接听下一个来电</div>
          <button type="button" data-agent="end_wrap_up" onClick={endWrapUp}>
            结束整理，接听下一个
          </button>
        </div>
      ) : (
        <p class="muted" data-call-controls="none">
          {state === 'ringing' ? '来电振铃中…' : '当前没有通话'}
        </p>
      )}
      {result && !error && (
        <div class="banner ok" data-transfer-result>
          {result}
        </div>
      )}
      <ErrorBanner error={error} />
    </Section>
  );
}

type SaveState = { kind: 'idle' } | { kind: 'saving' } | { kind: 'saved'; at: Date } | { kind: 'error'; error: unknown };

function OrderFormPanel(props: { me: Me; call: ScreenPop | null; onCreated: (o: Order) => void }) {
  const units = useUnits();
  const defaultCity = units.find((u) => u.id === props.me.unit && u.kind === 'city') ? props.me.unit : 'jinan';
  const [form, setForm] = useState<OrderForm>(() => {
    try {
      const saved = localStorage.getItem(DRAFT_KEY);
      if (saved) return { ...blankForm(defaultCity), ...(JSON.parse(saved) as Partial<OrderForm>), call_id: null };
    } catch {
      /* a corrupt draft is dropped */
    }
    return blankForm(defaultCity);
  });
  // The call whose server draft has been read: autosave only after that, so a blank
  // form never overwrites a saved draft.
  const [loadedFor, setLoadedFor] = useState<string | null>(null);
  const [save, setSave] = useState<SaveState>({ kind: 'idle' });
  const [key, setKey] = useState(newIdempotencyKey);
  const [error, setError] = useState<unknown>(null);
  const [created, setCreated] = useState<string | null>(null);
  // The short number to read out to the caller (鲁12348-20261207-0042).
  const [createdNumber, setCreatedNumber] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const timer = useRef<ReturnType<typeof setTimeout> | null>(null);

  // A new call: link the form to it, from its saved draft or from the screen-pop.
  const callId = props.call?.call_id ?? null;
  useEffect(() => {
    const p = props.call;
    if (!p) return;
    let cancelled = false;
    setCreated(null);
    setSave({ kind: 'idle' });
    get<{ fields: Partial<OrderForm> }>(draftUrl(p.call_id))
      .then((d) => {
        if (cancelled) return;
        setForm({ ...blankForm(defaultCity), ...d.fields, call_id: p.call_id });
        setSave({ kind: 'saved', at: new Date() });
      })
      .catch(() => {
        if (cancelled) return;
        setForm((f) => ({
          ...blankForm(f.city),
          call_id: p.call_id,
          channel: 'phone',
          city: p.city ?? f.city,
          category: p.category && p.category in categoryOptions('phone') ? p.category : 'consultation',
          urgency: p.urgency && p.urgency in URGENCY_LABELS ? p.urgency : 'normal',
        }));
      })
      .finally(() => !cancelled && setLoadedFor(p.call_id));
    return () => {
      cancelled = true;
    };
  }, [callId]);

  // Autosave: a call's draft on the server, any other draft in this browser.
  useEffect(() => {
    if (!form.call_id) {
      localStorage.setItem(DRAFT_KEY, JSON.stringify(form));
      return;
    }
    if (loadedFor !== form.call_id) return;
    if (timer.current) clearTimeout(timer.current);
    const id = form.call_id;
    timer.current = setTimeout(() => {
      setSave({ kind: 'saving' });
      put(draftUrl(id), form)
        .then(() => setSave({ kind: 'saved', at: new Date() }))
        .catch((e) => setSave({ kind: 'error', error: e }));
    }, AUTOSAVE_MS);
    return () => {
      if (timer.current) clearTimeout(timer.current);
    };
  }, [form, loadedFor]);

  const set = (patch: Partial<OrderForm>) => setForm({ ...form, ...patch });
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    if (timer.current) clearTimeout(timer.current);
    try {
      const body: Record<string, unknown> = { ...form };
      if (!form.received_at) delete body.received_at;
      else body.received_at = new Date(form.received_at).toISOString();
      if (!form.call_id) delete body.call_id;
      // The server deletes the call's draft once the order exists.
      const order = await api<Order>('POST', '/api/orders', body, { 'Idempotency-Key': key });
      setCreated(order.id);
      setCreatedNumber(order.number ?? null);
      if (!form.call_id) localStorage.removeItem(DRAFT_KEY);
      setForm(blankForm(form.city));
      setLoadedFor(null);
      setSave({ kind: 'idle' });
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
  const saveText =
    save.kind === 'saving'
      ? '保存中…'
      : save.kind === 'saved'
        ? `已自动保存 ${save.at.toLocaleTimeString('zh-CN', { hour12: false })}`
        : save.kind === 'error'
          ? `自动保存失败：${errorText(save.error)}`
          : '';
  return (
    <Section
      title="工单登记"
      extra={
        form.call_id ? (
          <span>
            <span class="chip" data-linked-call={form.call_id}>
              关联通话 {form.call_id}
            </span>
            <span class={`chip autosave-${save.kind}`} data-autosave={save.kind}>
              {saveText || '自动保存'}
            </span>
          </span>
        ) : null
      }
    >
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
            placeholder={form.call_id ? '留空：使用本次来电号码' : ''}
            required={!form.call_id}
          />
        </label>
        <label>
          诉求类别
          <select name="category" value={form.category} onChange={(e) => set({ category: e.currentTarget.value })}>
            {options(categoryOptions(form.channel))}
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
          <select
            name="channel"
            value={form.channel}
            onChange={(e) => {
              const channel = e.currentTarget.value;
              // 案件 is registered from other channels only (H-8).
              set(form.category in categoryOptions(channel) ? { channel } : { channel, category: 'consultation' });
            }}
          >
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
        <p class="wide muted small" data-deadline-rule>
          {DEADLINE_RULE}
        </p>
        <div class="wide buttons">
          <button type="submit" class="primary" disabled={busy} data-action="create-order">
            保存并提交工单
          </button>
          <button type="button" onClick={() => setForm({ ...blankForm(defaultCity), call_id: form.call_id })}>
            清空
          </button>
        </div>
      </form>
      {error ? <div class="banner error" role="alert">{errorText(error)}</div> : null}
      {created && (
        <div class="banner ok" data-created-order={created} data-created-number={createdNumber ?? ''}>
          工单 <span class="mono">{createdNumber ?? created}</span> 已创建并提交
          {createdNumber && '（请向来电人告知此编号）'}
        </div>
      )}
    </Section>
  );
}

function savedPop(callId: string): ScreenPop | null {
  try {
    const p = JSON.parse(sessionStorage.getItem(POP_KEY) ?? 'null') as ScreenPop | null;
    return p && p.call_id === callId ? p : null;
  } catch {
    return null;
  }
}

export function AgentWorkspace({ me }: { me: Me }) {
  const agentId = me.agent ?? me.id;
  const [pop, setPop] = useState<ScreenPop | null>(null);
  const [live, setLive] = useState<'connecting' | 'open' | 'unavailable'>('connecting');
  const [agent, setAgent] = useState<AgentLive | null>(null);
  const [missing, setMissing] = useState(false);
  const [refresh, setRefresh] = useState(0);
  const [tick, setTick] = useState(0);

  // The agent's state from the queue snapshot: at start, after a reconnect, after a
  // lagged stream and after our own changes. A call in progress after a reload is
  // linked again (its draft is on the server).
  useEffect(() => {
    let cancelled = false;
    get<QueueState[]>('/api/queues')
      .then((queues) => {
        if (cancelled) return;
        const a = queues.flatMap((q) => q.agents).find((x) => x.id === agentId);
        if (!a) return;
        setAgent({
          state: a.state,
          call_id: a.call_id ?? null,
          untilMs: typeof a.wrap_up_left_ms === 'number' ? Date.now() + a.wrap_up_left_ms : null,
        });
        if (a.call_id) {
          const id = a.call_id;
          setPop((p) => (p?.call_id === id ? p : (savedPop(id) ?? { call_id: id, restored: true })));
        }
      })
      .catch((e) => {
        if (!cancelled && isMissing(e)) setMissing(true);
      });
    return () => {
      cancelled = true;
    };
  }, [agentId, tick]);

  useEffect(() => {
    if (typeof EventSource === 'undefined') {
      setLive('unavailable');
      return;
    }
    const es = new EventSource('/api/events');
    es.onopen = () => {
      setLive('open');
      setTick((n) => n + 1);
    };
    es.onerror = () => {
      // A 404 (no call center yet) closes the stream for good; a dropped connection
      // reconnects by itself.
      if (es.readyState === EventSource.CLOSED) setLive('unavailable');
      else setLive('connecting');
    };
    es.addEventListener('call_offered', (ev) => {
      try {
        const p = JSON.parse((ev as MessageEvent).data) as ScreenPop;
        if (p.agent === agentId) {
          setPop(p);
          sessionStorage.setItem(POP_KEY, JSON.stringify(p));
        }
      } catch {
        /* malformed event ignored */
      }
    });
    es.addEventListener('agent_state', (ev) => {
      try {
        const s = JSON.parse((ev as MessageEvent).data) as {
          agent?: string;
          to?: string;
          at?: string;
          call?: string | null;
          until?: string | null;
          reason?: string | null;
        };
        if (s.agent === agentId && s.to) {
          setAgent({
            state: agentStateName(s.to),
            call_id: s.call ?? null,
            untilMs: localDeadline(s.until, s.at, Date.now()),
            reason: s.reason ?? null,
          });
        }
      } catch {
        /* malformed event ignored */
      }
    });
    es.addEventListener('lagged', () => setTick((n) => n + 1));
    return () => es.close();
  }, [agentId]);
  return (
    <div class="console agent">
      <div class="two-col">
        <div>
          <AgentStatus agentId={agentId} live={agent} missing={missing} onChanged={() => setTick((n) => n + 1)} />
          <Softphone agentId={agentId} />
          <ScreenPopPanel pop={pop} live={live} />
          <CallControls agentId={agentId} live={agent} onChanged={() => setTick((n) => n + 1)} />
        </div>
        <OrderFormPanel
          me={me}
          call={pop}
          onCreated={() => {
            setRefresh((n) => n + 1);
          }}
        />
      </div>
      <OrderConsole me={me} title="近期工单" baseQuery={{ per_page: '20' }} showFilters={false} refreshKey={refresh} />
    </div>
  );
}

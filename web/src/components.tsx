// Shared pieces: order table with deadline marks, order detail with the command buttons
// the server allows (`allowed_commands`), filters, error banner.

import { useEffect, useState } from 'preact/hooks';
import type { ComponentChildren } from 'preact';
import { ApiError, get, post, recordingUrl, sendCommand, type Me, type Order, type Unit } from './api';
import {
  ANSWERING_COMMANDS,
  AREA_LABELS,
  CALL_BACK_OUTCOME_LABELS,
  CALL_BACK_STATE_LABELS,
  kindName,
  CATEGORY_LABELS,
  CHANNEL_LABELS,
  COMMAND_LABELS,
  DEADLINE_RULE,
  STATE_LABELS,
  URGENCY_LABELS,
  categoryOptions,
  contactOf,
  lastReturnReason,
  currentDue,
  currentDueKind,
  deadlineMark,
  deadlineText,
  formatDateTime,
  label,
  remainingText,
  timelineEntry,
  unitIds,
} from './format';
import { serverNow } from './clock';

export function errorText(e: unknown): string {
  if (e instanceof ApiError) {
    if (e.code === 'csrf') return '会话已失效，请重新登录（CSRF）';
    if (e.code === 'version_conflict') return '工单已被他人更新，请刷新后重试';
    if (e.code === 'transfer_unavailable') return '转接承办单位外线暂不可用（服务器尚未开通外呼），请转其他城市或登记工单转办';
    if (e.code === 'not_bridged') return '通话尚未接通或已结束，无法转接';
    if (e.code === 'transfer_refused') return `转接被拒绝：${e.message}`;
    if (e.code === 'trunk_not_configured') return '无法回拨：服务器未配置外呼中继';
    if (e.code === 'no_registered_phone') return '无法回拨：您的话机未登记（请先在话机上登录分机）';
    if (e.code === 'no_number') return '无法回拨：工单没有来电人号码';
    if (e.code === 'number_refused') return `无法回拨：该号码不允许外呼（${e.message}）`;
    if (e.code === 'call_in_progress') return '该工单的回拨正在进行中';
    if (e.code === 'phone_busy') return '无法回拨：您的话机正在通话';
    if (e.status === 403) return `无权操作：${e.message}`;
    return e.field ? `${e.message}（字段：${e.field}）` : e.message;
  }
  return e instanceof Error ? e.message : String(e);
}

export function ErrorBanner({ error }: { error: unknown }) {
  if (!error) return null;
  return (
    <div class="banner error" role="alert">
      {errorText(error)}
    </div>
  );
}

let unitsCache: Promise<Unit[]> | null = null;
export function useUnits(): Unit[] {
  const [units, setUnits] = useState<Unit[]>([]);
  useEffect(() => {
    unitsCache ??= get<Unit[]>('/api/units').catch(() => {
      unitsCache = null;
      return [];
    });
    unitsCache.then(setUnits);
  }, []);
  return units;
}

export function unitName(units: Unit[], id: string | null | undefined): string {
  if (!id) return '—';
  return units.find((u) => u.id === id)?.name ?? id;
}

export function Section(props: { title: string; children: ComponentChildren; extra?: ComponentChildren }) {
  return (
    <section class="card">
      <header class="card-head">
        <h2>{props.title}</h2>
        {props.extra}
      </header>
      {props.children}
    </section>
  );
}

export function MarkDot({ order, now }: { order: Order; now: Date }) {
  const mark = deadlineMark(order, now);
  const title = mark === 'red' ? '已超时' : mark === 'yellow' ? '即将到期' : '正常';
  return <span class={`dot dot-${mark}`} title={title} aria-label={title} />;
}

export function OrderTable(props: {
  orders: Order[];
  units: Unit[];
  selected?: string | null;
  onSelect: (o: Order) => void;
}) {
  const now = serverNow();
  if (props.orders.length === 0) return <p class="empty">暂无工单</p>;
  return (
    <table class="orders">
      <thead>
        <tr>
          <th />
          <th>工单号</th>
          <th>状态</th>
          <th>类别</th>
          <th>业务</th>
          <th>紧急</th>
          <th>城市</th>
          <th>承办单位</th>
          <th>时限</th>
        </tr>
      </thead>
      <tbody>
        {props.orders.map((o) => {
          const due = currentDue(o);
          const dueKind = currentDueKind(o);
          const dl = o.deadlines as Record<string, unknown> | null | undefined;
          const dueDisplay = dueKind ? deadlineText(dl, dueKind, now) : '—';
          const mark = deadlineMark(o, now);
          return (
            <tr
              key={o.id}
              class={`row-${mark} ${props.selected === o.id ? 'selected' : ''}`}
              data-order-id={o.id}
              onClick={() => props.onSelect(o)}
            >
              <td>
                <MarkDot order={o} now={now} />
              </td>
              <td class="mono" title={o.id}>
                {o.number ?? o.id}
              </td>
              <td>{label(STATE_LABELS, o.state)}</td>
              <td>{label(CATEGORY_LABELS, o.fields.category)}</td>
              <td>{label(AREA_LABELS, o.fields.business_area ?? o.fields.area)}</td>
              <td>{o.fields.urgency === 'urgent' ? <b class="urgent">紧急</b> : '一般'}</td>
              <td>{unitName(props.units, String(o.fields.city ?? ''))}</td>
              <td>{unitIds(o.units).map((u) => unitName(props.units, u)).join('、') || '—'}</td>
              <td title={DEADLINE_RULE} data-due={dueKind ?? ''}>
                {due && dueKind ? (
                  <>
                    {dueDisplay} <span class="remaining">{remainingText(dl, dueKind, now)}</span>
                  </>
                ) : (
                  '—'
                )}
              </td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

export interface Filters {
  city: string;
  category: string;
  business_area: string;
  urgency: string;
  state: string;
  overdue: boolean;
}

export const NO_FILTERS: Filters = {
  city: '',
  category: '',
  business_area: '',
  urgency: '',
  state: '',
  overdue: false,
};

export function filterQuery(f: Filters, extra: Record<string, string> = {}): string {
  const q = new URLSearchParams({ sort: 'deadline', per_page: '100', ...extra });
  for (const key of ['city', 'category', 'business_area', 'urgency', 'state'] as const) {
    if (f[key]) q.set(key, f[key]);
  }
  if (f.overdue) q.set('overdue', 'true');
  return q.toString();
}

function Select(props: {
  label: string;
  value: string;
  options: Record<string, string>;
  onChange: (v: string) => void;
  name: string;
}) {
  return (
    <label>
      {props.label}
      <select name={props.name} value={props.value} onChange={(e) => props.onChange(e.currentTarget.value)}>
        <option value="">全部</option>
        {Object.entries(props.options).map(([k, v]) => (
          <option key={k} value={k}>
            {v}
          </option>
        ))}
      </select>
    </label>
  );
}

export function FilterBar(props: { filters: Filters; units: Unit[]; onChange: (f: Filters) => void }) {
  const f = props.filters;
  const set = (patch: Partial<Filters>) => props.onChange({ ...f, ...patch });
  const cities = Object.fromEntries(props.units.filter((u) => u.kind === 'city').map((u) => [u.id, u.name]));
  return (
    <div class="filters">
      <Select name="city" label="城市" value={f.city} options={cities} onChange={(city) => set({ city })} />
      <Select name="category" label="类别" value={f.category} options={CATEGORY_LABELS} onChange={(category) => set({ category })} />
      <Select
        name="business_area"
        label="业务"
        value={f.business_area}
        options={AREA_LABELS}
        onChange={(business_area) => set({ business_area })}
      />
      <Select name="urgency" label="紧急程度" value={f.urgency} options={URGENCY_LABELS} onChange={(urgency) => set({ urgency })} />
      <Select name="state" label="状态" value={f.state} options={STATE_LABELS} onChange={(state) => set({ state })} />
      <label class="check">
        <input type="checkbox" checked={f.overdue} onChange={(e) => set({ overdue: e.currentTarget.checked })} />
        仅超时
      </label>
    </div>
  );
}

/** Roles the server lets hear recordings (TK-PRIVACY): supervisors and province
 * administrators (quality assessment), and agents their own calls. */
export const RECORDING_ROLES = ['supervisor', 'province_admin', 'agent'];

/** An audio player for a call's recording. `preload="none"`: the server audits every
 * request, so only a real play fetches audio. A refusal (403) or a missing file shows
 * a note instead of a broken player. */
export function RecordingPlayer(props: { callId: string }) {
  const [failed, setFailed] = useState(false);
  useEffect(() => setFailed(false), [props.callId]);
  if (failed) {
    return (
      <span class="muted" data-recording-error={props.callId}>
        录音不可用（通话未结束、无录音或无权收听）
      </span>
    );
  }
  return (
    <audio
      controls
      preload="none"
      src={recordingUrl(props.callId)}
      data-recording={props.callId}
      onError={() => setFailed(true)}
    />
  );
}

interface CallBackProgress {
  call_id: string;
  state: string;
  outcome?: string | null;
  talk_secs?: number | null;
  recording_url?: string | null;
}

/** 回拨 (H-11, H-12-3): the server rings the user's own phone, then the order's caller
 * through the trunk, recorded; the state is read back until the call ends, then the
 * order (and its history, which holds the call) is re-read. */
export function CallBackButton(props: { order: Order; onEnded: () => void }) {
  const id = props.order.id;
  const [progress, setProgress] = useState<CallBackProgress | null>(null);
  const [error, setError] = useState<unknown>(null);
  const path = `/api/orders/${encodeURIComponent(id)}/call_back`;
  useEffect(() => {
    setProgress(null);
    setError(null);
  }, [id]);
  const running = progress !== null && progress.state !== 'ended';
  useEffect(() => {
    if (!running) return;
    const timer = window.setInterval(async () => {
      try {
        const p = await get<CallBackProgress>(path);
        setProgress(p);
        if (p.state === 'ended') props.onEnded();
      } catch (e) {
        setError(e);
      }
    }, 1000);
    return () => window.clearInterval(timer);
  }, [running, path]);
  const start = async () => {
    setError(null);
    try {
      setProgress(await post<CallBackProgress>(path, {}));
    } catch (e) {
      setError(e);
    }
  };
  const ended = progress?.state === 'ended';
  return (
    <span class="call-back" data-call-back={id} data-call-back-state={progress?.state ?? ''}>
      <button type="button" class="link" disabled={running} onClick={start} title="先呼叫您登记的话机，接听后由系统经中继呼叫来电人，全程录音并记入工单">
        回拨
      </button>
      {progress && (
        <span class="muted">
          {' '}
          {label(CALL_BACK_STATE_LABELS, progress.state)}
          {ended && progress.outcome ? `：${label(CALL_BACK_OUTCOME_LABELS, progress.outcome)}` : ''}
          {ended && progress.outcome === 'answered' ? `，通话${progress.talk_secs ?? 0}秒` : ''}
        </span>
      )}
      {ended && progress?.recording_url && <RecordingPlayer callId={progress.call_id} />}
      <ErrorBanner error={error} />
    </span>
  );
}

export function OrderDetail(props: {
  order: Order;
  me: Me;
  units: Unit[];
  onChanged: (o: Order | null) => void;
  timelineOpen?: boolean;
}) {
  const o = props.order;
  const contact = contactOf(o.fields);
  const [revealed, setRevealed] = useState<string | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    setRevealed(null);
    setError(null);
  }, [o.id]);
  // The API masks the number for roles that do not talk to the caller; revealing it is
  // audited server-side, which also decides whether this user may.
  const mayReveal = contact.phone.includes('*');
  const reveal = async () => {
    // H-12-4: a reason is required; it goes into the order's history and the audit.
    const reason = window.prompt('显示完整号码的理由（记入工单记录和审计）')?.trim();
    if (!reason) return;
    try {
      const r = await post<Record<string, unknown>>(`/api/orders/${encodeURIComponent(o.id)}/reveal_contact`, {
        reason,
      });
      setRevealed(contactOf(r).phone);
    } catch (e) {
      setError(e);
    }
  };
  const [events] = useOrderEvents(o.id, o.version);
  const now = serverNow();
  const dl = o.deadlines as Record<string, unknown> | null | undefined;
  const dueKind = currentDueKind(o);
  const returnReason = typeof o.last_return_reason === 'string' ? o.last_return_reason : lastReturnReason(events);
  const ext = o.pending_extension as { extra_working_days?: number; reason?: string } | null | undefined;
  const returnedBy = (o.returned_by as string[] | undefined) ?? [];
  // An order opened from a voice message: the server's play URL (audited per play).
  const voice = o.voice_message as { play_url?: string } | null | undefined;
  // H-9: the caller's dissatisfaction reported to the unit within 1 working day.
  const report = o.dissatisfaction_report as
    | {
        unit?: string;
        due?: string;
        due_display?: string;
        working_days?: number;
        working_days_left?: number;
        reported_at?: string | null;
        overdue?: boolean;
      }
    | null
    | undefined;
  return (
    <div class="detail" data-order-detail={o.id} data-version={o.version}>
      <h3>
        工单{' '}
        <span class="mono" title={o.id} data-order-number={o.number ?? ''}>
          {o.number ?? o.id}
        </span>{' '}
        <span class={`state state-${o.state}`}>{label(STATE_LABELS, o.state)}</span>
        {o.special_flag && <span class="flag">特殊标记</span>}
      </h3>
      <dl class="grid">
        <dt>来电人</dt>
        <dd>
          {contact.name || '（匿名）'} <span class="mono phone">{revealed ?? contact.phone}</span>
          {mayReveal && !revealed && (
            <button type="button" class="link" onClick={reveal}>
              显示号码
            </button>
          )}
          {(o.allowed_commands ?? []).some((c) => ANSWERING_COMMANDS.includes(c)) && contact.phone && (
            <CallBackButton order={o} onEnded={() => props.onChanged(null)} />
          )}
        </dd>
        <dt>类别 / 业务</dt>
        <dd>
          {label(CATEGORY_LABELS, o.fields.category)} / {label(AREA_LABELS, o.fields.business_area ?? o.fields.area)}
          {o.fields.urgency === 'urgent' && <b class="urgent"> 紧急</b>}
        </dd>
        <dt>渠道 / 城市</dt>
        <dd>
          {label(CHANNEL_LABELS, o.fields.channel)} / {unitName(props.units, String(o.fields.city ?? ''))}
        </dd>
        {typeof o.fields.call_id === 'string' && o.fields.call_id && props.me.roles.some((r) => RECORDING_ROLES.includes(r)) && (
          <>
            <dt>通话录音</dt>
            <dd>
              <RecordingPlayer callId={o.fields.call_id} />
            </dd>
          </>
        )}
        {voice?.play_url && (
          <>
            <dt>来电留言</dt>
            <dd>
              <audio controls preload="none" src={voice.play_url} data-voice-message={o.id} />
            </dd>
          </>
        )}
        <dt>受理时间</dt>
        <dd>{formatDateTime(o.fields.received_at as string | undefined)}</dd>
        <dt>诉求描述</dt>
        <dd class="pre">{String(o.fields.description ?? '')}</dd>
        {o.fields.remarks ? (
          <>
            <dt>备注</dt>
            <dd class="pre">{String(o.fields.remarks)}</dd>
          </>
        ) : null}
        <dt>承办单位</dt>
        <dd>
          {unitIds(o.units).map((u) => unitName(props.units, u)).join('、') || '—'}
          {o.lead_unit ? `（主办：${unitName(props.units, o.lead_unit)}` : ''}
          {o.lead_unit && unitIds(o.helping_units).length > 0
            ? `；协办：${unitIds(o.helping_units).map((u) => unitName(props.units, u)).join('、')}`
            : ''}
          {o.lead_unit ? '）' : ''}
        </dd>
        {returnedBy.length > 0 && (
          <>
            <dt>退回单位</dt>
            <dd>{returnedBy.map((u) => unitName(props.units, u)).join('、')}</dd>
          </>
        )}
        {returnReason !== null && (
          <>
            <dt>退回理由</dt>
            <dd class="pre return-reason">{returnReason || '（未填写）'}</dd>
          </>
        )}
        <dt>时限</dt>
        <dd data-deadlines={o.id} title={DEADLINE_RULE}>
          转办 {deadlineText(dl, 'transfer', now)} · 反馈 {deadlineText(dl, 'feedback', now)}
          {o.deadlines?.callback_due ? ` · 回访 ${deadlineText(dl, 'callback', now)}` : ''}
          {o.deadlines?.provisional ? '（暂定：日历数据缺失）' : ''}
          {dueKind && <span class="remaining"> ｜ {remainingText(dl, dueKind, now)}</span>}
          <div class="muted small">受理当日不计入，自次日起按工作日计算</div>
        </dd>
        {report && (
          <>
            <dt>不满意通报</dt>
            <dd data-dissatisfaction-report={o.id}>
              向{unitName(props.units, report.unit ?? '')}通报，时限{' '}
              {deadlineText(
                { report_due: report.due, report_working_days: report.working_days, report_working_days_left: report.working_days_left },
                'report',
                now,
              )}
              {report.reported_at ? `，已于 ${formatDateTime(report.reported_at)} 通报` : '，未通报'}
              {report.overdue ? '（超时）' : ''}
            </dd>
          </>
        )}
        {ext && (
          <>
            <dt>延期申请</dt>
            <dd>
              {ext.extra_working_days} 个工作日：{ext.reason}
            </dd>
          </>
        )}
        {typeof o.draft_reply === 'string' && (
          <>
            <dt>答复草稿</dt>
            <dd class="pre">{o.draft_reply}</dd>
          </>
        )}
        {typeof o.reply === 'string' && (
          <>
            <dt>答复</dt>
            <dd class="pre">{o.reply}</dd>
          </>
        )}
      </dl>
      <ErrorBanner error={error} />
      <Timeline orderId={o.id} version={o.version} units={props.units} events={events} compact={!props.timelineOpen} />
      <CommandPanel order={o} units={props.units} onChanged={props.onChanged} />
    </div>
  );
}

export interface LedgerRow {
  seq: number;
  at: string;
  actor: string;
  /** The actor's name (`[[users]] name`); null for an account no longer configured. */
  actor_name?: string | null;
  role?: string;
  unit?: string;
  state_before?: string | null;
  state_after?: string | null;
  kind?: unknown;
  reason?: string | null;
}

/** The ledger of one order, re-read whenever its version changes. */
export function useOrderEvents(orderId: string | null, version?: number): [LedgerRow[] | null, unknown] {
  const [events, setEvents] = useState<LedgerRow[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    if (!orderId) return;
    let cancelled = false;
    setError(null);
    get<LedgerRow[]>(`/api/orders/${encodeURIComponent(orderId)}/events`)
      .then((ev) => !cancelled && setEvents(ev))
      .catch((e) => {
        if (cancelled) return;
        setEvents(null);
        setError(e);
      });
    return () => {
      cancelled = true;
    };
  }, [orderId, version]);
  return [events, error];
}

export function Timeline(props: { orderId: string; version?: number; units: Unit[]; compact?: boolean; events?: LedgerRow[] | null }) {
  const [fetched, error] = useOrderEvents(props.events === undefined ? props.orderId : null, props.version);
  const events = props.events === undefined ? fetched : props.events;
  if (error) return <ErrorBanner error={error} />;
  if (!events) return null;
  return (
    <details class="timeline-box" open={!props.compact}>
      <summary>办理记录（{events.length}）</summary>
      <ol class="timeline">
        {events.map((ev) => {
          const entry = timelineEntry(ev, (u) => unitName(props.units, u));
          return (
            <li key={ev.seq} data-event={kindName(ev.kind)}>
              <time>{formatDateTime(ev.at)}</time>
              <span class="what">{entry.what}</span>
              {entry.extra && <span class="what-extra">{entry.extra}</span>}
              <span class="who">
                {entry.who}
                {ev.unit ? ` · ${unitName(props.units, ev.unit)}` : ''}
              </span>
              {ev.state_after && ev.state_after !== ev.state_before && (
                <span class="state-change">
                  {label(STATE_LABELS, ev.state_before)} → {label(STATE_LABELS, ev.state_after)}
                </span>
              )}
              {entry.text && <div class="reason">{entry.text}</div>}
            </li>
          );
        })}
      </ol>
    </details>
  );
}

// ---- commands ----

type FieldSpec =
  | { name: string; label: string; kind: 'text' | 'textarea'; required?: boolean }
  | { name: string; label: string; kind: 'number'; min: number; max: number; initial: number }
  | { name: string; label: string; kind: 'select'; options: Record<string, string>; initial: string }
  | { name: string; label: string; kind: 'units' };

const DECISION = { approve: '同意', reject: '不同意' };

const COMMAND_FORMS: Record<string, FieldSpec[]> = {
  dispatch: [
    { name: 'units', label: '派往单位（可多选，先签收者主办）', kind: 'units' },
    { name: 'category', label: '更正类别', kind: 'select', options: { '': '不更正', ...CATEGORY_LABELS }, initial: '' },
    { name: 'area', label: '更正业务', kind: 'select', options: { '': '不更正', ...AREA_LABELS }, initial: '' },
    { name: 'urgency', label: '更正紧急程度', kind: 'select', options: { '': '不更正', ...URGENCY_LABELS }, initial: '' },
    { name: 'contact_name', label: '更正联系人（空则不更正）', kind: 'text' },
    { name: 'contact_phone', label: '更正联系电话（空则不更正）', kind: 'text' },
  ],
  add_helping_units: [
    { name: 'units', label: '增加协办单位（主办单位已签收，W-11）', kind: 'units' },
    { name: 'reason', label: '增加协办的理由', kind: 'textarea', required: true },
  ],
  return: [{ name: 'reason', label: '退回理由', kind: 'textarea', required: true }],
  return_upward: [{ name: 'reason', label: '上报理由', kind: 'textarea', required: true }],
  withdraw: [
    { name: 'reason', label: '撤回原因', kind: 'textarea', required: true },
    { name: 'call_id', label: '来电人确认撤回的通话编号（督办岗批准时可空）', kind: 'text' },
  ],
  explain_outside_remit: [{ name: 'explanation', label: '向来电人所作解释说明', kind: 'textarea', required: true }],
  request_extension: [
    { name: 'extra_working_days', label: '延长工作日', kind: 'number', min: 1, max: 10, initial: 5 },
    { name: 'reason', label: '延期理由', kind: 'textarea', required: true },
  ],
  decide_extension: [
    { name: 'decision', label: '审批意见', kind: 'select', options: DECISION, initial: 'approve' },
    { name: 'reason', label: '理由（不同意时必填）', kind: 'textarea' },
  ],
  review: [
    { name: 'decision', label: '审核意见', kind: 'select', options: DECISION, initial: 'approve' },
    { name: 'reason', label: '理由（不同意时必填）', kind: 'textarea' },
  ],
  draft_reply: [{ name: 'text', label: '答复草稿', kind: 'textarea', required: true }],
  reply: [{ name: 'text', label: '答复内容', kind: 'textarea', required: true }],
  answer_directly: [{ name: 'answer', label: '答复内容', kind: 'textarea', required: true }],
  feed_back: [{ name: 'note', label: '反馈说明', kind: 'textarea' }],
  supervise: [{ name: 'note', label: '督办意见', kind: 'textarea', required: true }],
  add_note: [{ name: 'note', label: '备注', kind: 'textarea', required: true }],
  study_note: [{ name: 'note', label: '研究意见', kind: 'textarea', required: true }],
  conclude_study: [{ name: 'result', label: '研究结论及处理情况', kind: 'textarea', required: true }],
  report_dissatisfaction: [
    { name: 'note', label: '向承办单位通报的不满意情况（H-9，1个工作日内）', kind: 'textarea', required: true },
  ],
  remind: [
    {
      name: 'deadline',
      label: '时限',
      kind: 'select',
      options: { feedback: '反馈时限', transfer: '转办时限', callback: '回访时限', report: '不满意通报时限' },
      initial: 'feedback',
    },
    { name: 'level', label: '级别', kind: 'select', options: { yellow: '黄牌', red: '红牌' }, initial: 'yellow' },
    { name: 'note', label: '催办说明', kind: 'textarea' },
  ],
};

/** The callback result as the form offers it, mapped to `record_callback`'s outcome. */
export const CALLBACK_RESULTS: Record<string, { label: string; outcome: Record<string, string> }> = {
  satisfied: { label: '满意（办结）', outcome: { outcome: 'satisfied' } },
  basically_satisfied: {
    label: '基本满意（依法办结）',
    outcome: { outcome: 'closed_on_judgement', satisfaction: 'basically_satisfied', ground: 'law_or_policy' },
  },
  dissatisfied_judgement: {
    label: '不满意，诉求不合理（依法办结）',
    outcome: { outcome: 'closed_on_judgement', satisfaction: 'dissatisfied', ground: 'unreasonable_demand' },
  },
  dissatisfied: { label: '不满意（转二次回访 / 特殊标记）', outcome: { outcome: 'dissatisfied' } },
  redo_unit: { label: '办理结果有误：承办单位重办', outcome: { outcome: 'redo', target: 'unit' } },
  redo_agent: { label: '坐席答复不当：坐席重办', outcome: { outcome: 'redo', target: 'agent' } },
};

function CallbackForm(props: { onSubmit: (fields: Record<string, unknown>) => void; busy: boolean }) {
  const [result, setResult] = useState('satisfied');
  const [note, setNote] = useState('');
  return (
    <form
      class="command-form"
      onSubmit={(e) => {
        e.preventDefault();
        const r = CALLBACK_RESULTS[result];
        if (r) props.onSubmit({ outcome: r.outcome, note });
      }}
    >
      <fieldset class="radios">
        <legend>回访结果</legend>
        {Object.entries(CALLBACK_RESULTS).map(([k, v]) => (
          <label key={k}>
            <input type="radio" name="callback_result" value={k} checked={result === k} onChange={() => setResult(k)} />
            {v.label}
          </label>
        ))}
      </fieldset>
      <label>
        说明{result === 'satisfied' ? '' : '（必填）'}
        <textarea name="note" value={note} onInput={(e) => setNote(e.currentTarget.value)} required={result !== 'satisfied'} />
      </label>
      <button type="submit" class="primary" disabled={props.busy}>
        提交回访结果
      </button>
    </form>
  );
}

function CommandForm(props: {
  specs: FieldSpec[];
  units: Unit[];
  submitLabel: string;
  busy: boolean;
  onSubmit: (fields: Record<string, unknown>) => void;
}) {
  const initial: Record<string, unknown> = {};
  for (const s of props.specs) {
    if (s.kind === 'number' || s.kind === 'select') initial[s.name] = s.initial;
    else if (s.kind === 'units') initial[s.name] = [];
    else initial[s.name] = '';
  }
  const [values, setValues] = useState(initial);
  const set = (name: string, v: unknown) => setValues({ ...values, [name]: v });
  const handlingUnits = props.units.filter((u) => u.kind !== 'province');
  return (
    <form
      class="command-form"
      onSubmit={(e) => {
        e.preventDefault();
        const out: Record<string, unknown> = {};
        for (const s of props.specs) {
          const v = values[s.name];
          if (s.kind === 'select' && v === '' && s.name !== 'decision') out[s.name] = null;
          else out[s.name] = v;
        }
        props.onSubmit(out);
      }}
    >
      {props.specs.map((s) => {
        switch (s.kind) {
          case 'text':
            return (
              <label key={s.name}>
                {s.label}
                <input name={s.name} value={String(values[s.name])} required={s.required} onInput={(e) => set(s.name, e.currentTarget.value)} />
              </label>
            );
          case 'textarea':
            return (
              <label key={s.name}>
                {s.label}
                <textarea name={s.name} value={String(values[s.name])} required={s.required} onInput={(e) => set(s.name, e.currentTarget.value)} />
              </label>
            );
          case 'number':
            return (
              <label key={s.name}>
                {s.label}
                <input
                  type="number"
                  name={s.name}
                  min={s.min}
                  max={s.max}
                  value={Number(values[s.name])}
                  onInput={(e) => set(s.name, Number(e.currentTarget.value))}
                />
              </label>
            );
          case 'select':
            return (
              <label key={s.name}>
                {s.label}
                <select name={s.name} value={String(values[s.name])} onChange={(e) => set(s.name, e.currentTarget.value)}>
                  {Object.entries(s.options).map(([k, v]) => (
                    <option key={k} value={k}>
                      {v}
                    </option>
                  ))}
                </select>
              </label>
            );
          case 'units': {
            const chosen = values[s.name] as string[];
            return (
              <fieldset key={s.name} class="unit-picks">
                <legend>{s.label}</legend>
                {handlingUnits.map((u) => (
                  <label key={u.id}>
                    <input
                      type="checkbox"
                      name="unit"
                      value={u.id}
                      checked={chosen.includes(u.id)}
                      onChange={(e) =>
                        set(s.name, e.currentTarget.checked ? [...chosen, u.id] : chosen.filter((x) => x !== u.id))
                      }
                    />
                    {u.name}
                  </label>
                ))}
              </fieldset>
            );
          }
        }
      })}
      <button type="submit" class="primary" disabled={props.busy}>
        确认{props.submitLabel}
      </button>
    </form>
  );
}

/** A command's form for this order: the category correction offers 案件 only for an
 * order from another channel (H-8: the hotline registers 咨询/投诉/建议). */
function formFor(command: string, order: Order): FieldSpec[] {
  return (COMMAND_FORMS[command] ?? []).map((spec) =>
    spec.kind === 'select' && spec.name === 'category'
      ? { ...spec, options: { '': '不更正', ...categoryOptions(order.fields.channel) } }
      : spec,
  );
}

export function CommandPanel(props: { order: Order; units: Unit[]; onChanged: (o: Order | null) => void }) {
  const [open, setOpen] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [done, setDone] = useState<string | null>(null);
  useEffect(() => {
    setOpen(null);
    setError(null);
  }, [props.order.id, props.order.version]);
  useEffect(() => setDone(null), [props.order.id]);
  const commands = (props.order.allowed_commands ?? []).filter((c) => c !== 'reveal_contact');
  const run = async (command: string, fields: Record<string, unknown> = {}) => {
    setBusy(true);
    setError(null);
    setDone(null);
    try {
      const updated = await sendCommand(props.order, command, fields);
      setDone(`${label(COMMAND_LABELS, command)}：已完成`);
      setOpen(null);
      props.onChanged(updated && typeof updated === 'object' && 'id' in updated ? updated : null);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  if (commands.length === 0) return <p class="muted">当前无可执行的操作</p>;
  return (
    <div class="commands">
      <div class="buttons">
        {commands.map((c) => {
          const needsForm = c === 'record_callback' || c in COMMAND_FORMS;
          return (
            <button
              key={c}
              type="button"
              data-command={c}
              class={open === c ? 'active' : c === 'return' || c === 'withdraw' ? 'danger' : ''}
              disabled={busy}
              onClick={() => (needsForm ? setOpen(open === c ? null : c) : run(c))}
            >
              {label(COMMAND_LABELS, c)}
            </button>
          );
        })}
      </div>
      {open === 'record_callback' && <CallbackForm busy={busy} onSubmit={(f) => run('record_callback', f)} />}
      {open && open !== 'record_callback' && COMMAND_FORMS[open] && (
        <CommandForm
          key={open}
          specs={formFor(open, props.order)}
          units={props.units}
          busy={busy}
          submitLabel={label(COMMAND_LABELS, open)}
          onSubmit={(f) => run(open, f)}
        />
      )}
      <ErrorBanner error={error} />
      {done && !error && <div class="banner ok">{done}</div>}
    </div>
  );
}

/** A console made of a filterable order list and the selected order's detail. */
export function OrderConsole(props: {
  me: Me;
  title: string;
  baseQuery: Record<string, string>;
  showFilters?: boolean;
  accept?: (o: Order) => boolean;
  refreshKey?: number;
  initialState?: string;
}) {
  const units = useUnits();
  const [filters, setFilters] = useState<Filters>({ ...NO_FILTERS, state: props.initialState ?? '' });
  const [orders, setOrders] = useState<Order[]>([]);
  const [total, setTotal] = useState(0);
  const [selected, setSelected] = useState<Order | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let cancelled = false;
    get<{ items: Order[]; total: number }>(`/api/orders?${filterQuery(filters, props.baseQuery)}`)
      .then((page) => {
        if (cancelled) return;
        const items = props.accept ? page.items.filter(props.accept) : page.items;
        setOrders(items);
        setTotal(props.accept ? items.length : page.total);
        setError(null);
      })
      .catch((e) => !cancelled && setError(e));
    return () => {
      cancelled = true;
    };
  }, [filters, tick, props.refreshKey, JSON.stringify(props.baseQuery)]);
  useEffect(() => {
    const t = setInterval(() => setTick((n) => n + 1), 30000);
    return () => clearInterval(t);
  }, []);
  const reloadSelected = async (id: string) => {
    try {
      setSelected(await get<Order>(`/api/orders/${encodeURIComponent(id)}`));
    } catch {
      setSelected(null);
    }
  };
  return (
    <div class="console">
      <Section
        title={props.title}
        extra={
          <span class="muted">
            共 {total} 件 ·{' '}
            <button type="button" class="link" onClick={() => setTick(tick + 1)}>
              刷新
            </button>
          </span>
        }
      >
        {props.showFilters !== false && <FilterBar filters={filters} units={units} onChange={setFilters} />}
        <ErrorBanner error={error} />
        <OrderTable orders={orders} units={units} selected={selected?.id} onSelect={(o) => reloadSelected(o.id)} />
      </Section>
      {selected && (
        <Section title="工单详情">
          <OrderDetail
            order={selected}
            me={props.me}
            units={units}
            onChanged={() => {
              // Re-read: `allowed_commands` is per user, and the order may have left
              // this user's scope (e.g. a unit returned it).
              reloadSelected(selected.id);
              setTick((n) => n + 1);
            }}
          />
        </Section>
      )}
    </div>
  );
}

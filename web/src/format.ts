// Pure helpers: Chinese labels, deadline colouring, formatting. No DOM, no fetch:
// unit-tested with vitest.

import type { Order } from './api';
// The label tables the server's exports use too (the ledger CSV, src/api/labels.rs): one
// source for the words the console and the exports show.
import labels from './labels.json';

// fed_back reads 待回访: fed back and urgent, the mandatory callback is still to come
// (H-11); special_study is a flag, not an end: open while the supervising unit studies
// it (W-14).
export const STATE_LABELS: Record<string, string> = labels.state;

export const CATEGORY_LABELS: Record<string, string> = labels.category;

/** The categories a 12348 hotline order is registered under (H-8: 咨询、投诉、建议);
 * 案件 only for a case registered from another channel (website, app, 12345…). */
export function categoryOptions(channel: unknown): Record<string, string> {
  if (channel === 'phone' || channel === undefined || channel === null || channel === '') {
    const { case: _case, ...hotline } = CATEGORY_LABELS;
    return hotline;
  }
  return CATEGORY_LABELS;
}

/** The H-8/H-9 counting rule, on the order form and beside limits. */
export const DEADLINE_RULE =
  '时限自受理次日起算，受理当日不计入：转办1个工作日内（紧急事项1小时内），反馈5个工作日内（经批准可延长，最长不超过15个工作日），紧急事项3个工作日内回访；节假日不计，调休上班日计入。';

export const URGENCY_LABELS: Record<string, string> = labels.urgency;

export const AREA_LABELS: Record<string, string> = labels.area;

export const CHANNEL_LABELS: Record<string, string> = {
  phone: '12348电话',
  web: '网站',
  app: '移动客户端',
  wechat: '微信',
  hotline_12345: '12345转来',
};

export const ROLE_LABELS: Record<string, string> = labels.role;

export const COMMAND_LABELS: Record<string, string> = {
  create: '登记',
  submit: '提交',
  answer_directly: '直接答复',
  dispatch: '派单',
  add_helping_units: '增加协办单位',
  return_upward: '退回上级',
  sign: '签收',
  return: '退回',
  start: '开始办理',
  request_extension: '申请延期',
  decide_extension: '审批延期',
  draft_reply: '拟写答复',
  review: '审核答复',
  reply: '答复',
  send_reviewed_reply: '发送已审答复',
  feed_back: '反馈来电人',
  record_callback: '登记回访',
  remind: '催办',
  supervise: '督办',
  add_note: '添加备注',
  recompute_deadlines: '重算时限',
  withdraw: '撤回',
  explain_outside_remit: '非职能范围解释说明',
  study_note: '研究意见',
  conclude_study: '作出研究结论',
  reveal_contact: '显示号码',
  report_dissatisfaction: '向承办单位通报不满意',
};

/** Ledger event types (`kind.type` in `/api/orders/{id}/events`). */
export const EVENT_LABELS: Record<string, string> = labels.event;

export const SATISFACTION_LABELS: Record<string, string> = labels.satisfaction;

/** The survey a caller answered with keys after the call. */
export const CALL_SURVEY_LABELS: Record<string, string> = labels.call_survey;

/** Which limit (reminders, missed limits). */
export const LIMIT_LABELS: Record<string, string> = labels.limit;

export const CALLBACK_ROUND_LABELS: Record<string, string> = labels.callback_round;

export const REDO_TARGET_LABELS: Record<string, string> = labels.redo_target;

export const CALL_ATTEMPT_LABELS: Record<string, string> = {
  answered: '已接通',
  no_answer: '无人接听',
  busy: '占线',
  unreachable: '无法接通',
};

/** A call logged on an order (`kind.call`, tagged by `what`) in words, agents by name
 * (`*_name` from the server; `坐席 1001` for an extension no user works as). */
export function callLogText(call: unknown, unitName: (id: string) => string): string {
  if (!call || typeof call !== 'object') return '';
  const c = call as Record<string, unknown>;
  const agent = (key: string) => {
    const name = c[`${key}_name`];
    if (typeof name === 'string' && name) return name;
    return typeof c[key] === 'string' ? `坐席 ${c[key] as string}` : '坐席';
  };
  switch (c.what) {
    case 'callback_requested':
      return `来电人在排队第${String(c.position ?? '')}位时要求回电`;
    case 'callback_attempt':
      return `第${String(c.attempt ?? '')}次回电（${agent('agent')}）：${label(CALL_ATTEMPT_LABELS, c.result)}`;
    case 'callback_gave_up':
      return `回电未成功，共${String(c.attempts ?? '')}次，请人工回电`;
    case 'transferred_to_unit':
      return `来电已转接至${unitName(String(c.unit ?? ''))}${typeof c.agent === 'string' ? `（${agent('agent')}转接）` : ''}`;
    case 'transferred_to_agent':
      return typeof c.from === 'string' ? `来电由${agent('from')}转接至${agent('to')}` : `来电转接至${agent('to')}`;
    case 'order_callback': {
      const talked = c.result === 'answered' ? `，通话${String(c.talk_secs ?? 0)}秒` : '';
      return `${agent('by')}回拨解答：${label(CALL_ATTEMPT_LABELS, c.result)}${talked}`;
    }
    default:
      return '';
  }
}

/** Where an order's callback call (回拨) is, as `GET /api/orders/{id}/call_back` says. */
export const CALL_BACK_STATE_LABELS: Record<string, string> = {
  ringing_phone: '正在呼叫您的话机，请接听…',
  calling_caller: '正在呼叫来电人…',
  connected: '通话中',
  ended: '已结束',
};

/** How an order's callback call ended. */
export const CALL_BACK_OUTCOME_LABELS: Record<string, string> = {
  answered: '已接通',
  no_answer: '无人接听',
  busy: '占线',
  failed: '呼叫失败',
  phone_not_answered: '您的话机未接听，未呼叫来电人',
};

/** The commands of those who answer the caller: they may call back (as the server decides). */
export const ANSWERING_COMMANDS = ['answer_directly', 'draft_reply', 'reply', 'send_reviewed_reply', 'feed_back', 'record_callback'];

export const REMINDER_LEVEL_LABELS: Record<string, string> = labels.reminder_level;

export const AGENT_STATE_LABELS: Record<string, string> = {
  signed_out: '签退',
  logged_out: '签退',
  idle: '空闲',
  ready: '空闲',
  available: '空闲',
  ringing: '振铃',
  on_call: '通话中',
  talking: '通话中',
  busy: '通话中',
  wrap_up: '话后整理',
  paused: '小休',
  offline: '离线',
};

/** Why the agent is in `state`, in words an agent acts on (offline above all: calls stop
 * coming and the softphone is the cause); `reason` is the last transition's reason. */
export function agentStateExplanation(state: string, reason?: string | null): string | null {
  if (state === 'offline') {
    if (reason === 'agent_lost') {
      return '您的电话没有响应来电，已转为离线，不再分配来电。请检查软电话或网络，电话重新注册后自动恢复。';
    }
    return '您已签到，但软电话未注册（注册已过期或已断开），暂不分配来电。请检查软电话，重新注册后自动恢复。';
  }
  if (reason === 'restored') return '服务器重启后，您的签到状态已自动恢复。';
  return null;
}

/** The state name of an `agent_state` event's `to` (`paused:用餐` → `paused`). */
export function agentStateName(to: string | null | undefined): string {
  if (!to) return '';
  const i = to.indexOf(':');
  return i < 0 ? to : to.slice(0, i);
}

/** When an event's `until` falls on this browser's clock: the server's span from `at`
 * to `until` added to `receivedMs` (the server's clock may differ from ours). */
export function localDeadline(
  until: string | null | undefined,
  at: string | null | undefined,
  receivedMs: number,
): number | null {
  if (!until || !at) return null;
  const span = Date.parse(until) - Date.parse(at);
  return Number.isNaN(span) ? null : receivedMs + Math.max(0, span);
}


export function label(map: Record<string, string>, key: unknown): string {
  if (typeof key !== 'string' || key === '') return '—';
  return map[key] ?? key;
}

export type Mark = 'red' | 'yellow' | 'none';

const DAY_MS = 24 * 60 * 60 * 1000;

/** Which limit the order currently runs against: transfer before dispatch, feedback while
 * a unit handles it, the mandatory callback once fed back; none when closed. */
export function currentDueKind(
  order: Pick<Order, 'state' | 'deadlines'>,
): 'transfer' | 'feedback' | 'callback' | null {
  const d = order.deadlines;
  if (!d) return null;
  switch (order.state) {
    case 'draft':
    case 'pending_dispatch':
      return 'transfer';
    case 'closed':
    case 'special_study': // no limit runs while the supervising unit studies it (W-14)
      return null;
    case 'fed_back':
    case 'second_callback':
      return d.callback_due ? 'callback' : 'feedback';
    default:
      return 'feedback';
  }
}

/** The instant of the current limit (see [`currentDueKind`]). */
export function currentDue(order: Pick<Order, 'state' | 'deadlines'>): string | null {
  const kind = currentDueKind(order);
  if (!kind || !order.deadlines) return null;
  return order.deadlines[`${kind}_due`] ?? null;
}

/** Deadline colour: the server's `reminder` when it says so (it knows working days),
 * else red when overdue and yellow within a day of the limit. */
export function deadlineMark(
  order: Pick<Order, 'state' | 'deadlines' | 'reminder' | 'overdue'>,
  now: Date,
): Mark {
  if (order.state === 'closed') return 'none';
  if (order.overdue || order.reminder === 'red') return 'red';
  if (order.reminder === 'yellow') return 'yellow';
  const due = currentDue(order);
  if (!due) return 'none';
  const dueMs = Date.parse(due);
  if (Number.isNaN(dueMs)) return 'none';
  if (now.getTime() >= dueMs) return 'red';
  if (dueMs - now.getTime() <= DAY_MS) return 'yellow';
  return 'none';
}

/** Orders by their current limit, earliest first; orders without one last, then by id. */
export function byDeadline<T extends Pick<Order, 'id' | 'state' | 'deadlines'>>(orders: T[]): T[] {
  const key = (o: T) => {
    const due = currentDue(o);
    const ms = due ? Date.parse(due) : NaN;
    return Number.isNaN(ms) ? Number.POSITIVE_INFINITY : ms;
  };
  return [...orders].sort((a, b) => key(a) - key(b) || a.id.localeCompare(b.id));
}

const pad = (n: number) => String(n).padStart(2, '0');

/** `2026-11-28 14:05` in Beijing time (UTC+8, no DST), whatever the browser's zone. */
export function formatDateTime(iso: string | null | undefined): string {
  if (!iso) return '—';
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) return iso;
  const d = new Date(ms + 8 * 60 * 60 * 1000);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(
    d.getUTCHours(),
  )}:${pad(d.getUTCMinutes())}`;
}

/** Time left to a limit in Chinese: `剩余 2天3小时`, `超时 5小时`. */
export function formatRemaining(due: string | null | undefined, now: Date): string {
  if (!due) return '—';
  const ms = Date.parse(due);
  if (Number.isNaN(ms)) return '—';
  const diff = ms - now.getTime();
  const abs = Math.abs(diff);
  const days = Math.floor(abs / DAY_MS);
  const hours = Math.floor((abs % DAY_MS) / (60 * 60 * 1000));
  const minutes = Math.floor((abs % (60 * 60 * 1000)) / 60000);
  const text = days > 0 ? `${days}天${hours}小时` : hours > 0 ? `${hours}小时${minutes}分` : `${minutes}分钟`;
  return diff >= 0 ? `剩余 ${text}` : `超时 ${text}`;
}

/** A rate in [0, 1] as `93.5%`; `—` when there is nothing to rate. */
export function formatRate(rate: number | null | undefined): string {
  if (rate === null || rate === undefined || !Number.isFinite(rate)) return '—';
  return `${(rate * 100).toFixed(1)}%`;
}

/** Names of the figures the rankings' combined score weighs (`[ranking.weights]`). */
export const WEIGHT_LABELS: Record<string, string> = {
  completion_rate: '办结率',
  on_time_rate: '按时办结率',
  satisfaction_rate: '满意率',
  sign_in_rate: '签到率',
  transfer_rate: '转办及时率',
};

/** The weights the server ranked with, for people: `办结率 20% · 按时办结率 30% …`
 * (each weight's share of their sum; weights of 0 are left out). */
export function weightsText(weights: Record<string, number> | null | undefined): string {
  if (!weights) return '—';
  const entries = Object.entries(weights).filter(([, w]) => Number.isFinite(w) && w > 0);
  const sum = entries.reduce((total, [, w]) => total + w, 0);
  if (sum <= 0) return '—';
  return entries
    .map(([k, w]) => `${WEIGHT_LABELS[k] ?? k} ${Math.round((w / sum) * 1000) / 10}%`)
    .join(' · ');
}

/** Seconds as `m:ss` (wait times on the wallboard). */
export function formatSeconds(secs: number): string {
  if (!Number.isFinite(secs) || secs < 0) return '—';
  const s = Math.floor(secs);
  return `${Math.floor(s / 60)}:${pad(s % 60)}`;
}

/** Contact of an order, whichever shape the API uses (`contact: {name, phone}` or flat). */
export function contactOf(fields: Record<string, unknown>): { name: string; phone: string } {
  const c = fields.contact as { name?: string; phone?: string } | undefined;
  return {
    name: String(c?.name ?? fields.contact_name ?? ''),
    phone: String(c?.phone ?? fields.contact_phone ?? ''),
  };
}

/** Unit ids the order is with (`units` may hold ids or `{unit, status}` objects). */
export function unitIds(units: unknown[] | undefined): string[] {
  return (units ?? [])
    .map((u) => (typeof u === 'string' ? u : (u as { unit?: string; id?: string })?.unit ?? (u as { id?: string })?.id))
    .filter((u): u is string => typeof u === 'string');
}

/** The month, quarter or year period strings the rankings accept. */
export function periodOf(now: Date, kind: 'month' | 'quarter' | 'year'): string {
  const bj = new Date(now.getTime() + 8 * 60 * 60 * 1000);
  const y = bj.getUTCFullYear();
  const m = bj.getUTCMonth() + 1;
  if (kind === 'year') return String(y);
  if (kind === 'quarter') return `${y}-Q${Math.floor((m - 1) / 3) + 1}`;
  return `${y}-${pad(m)}`;
}

/** The type of a ledger event's `kind` (`{"type": "returned", …}`), or of a command. */
export function kindName(kind: unknown): string {
  if (typeof kind === 'string') return kind;
  if (kind && typeof kind === 'object') {
    const k = kind as Record<string, unknown>;
    for (const key of ['type', 'command', 'kind']) {
      if (typeof k[key] === 'string') return k[key] as string;
    }
  }
  return '';
}

/** The reason of the latest return (退回) or return upward in a ledger, for the
 * dispatcher handling it; null when the order was never returned. */
export function lastReturnReason(
  events: { kind?: unknown; reason?: string | null }[] | null | undefined,
): string | null {
  const returns = (events ?? []).filter((ev) => ['returned', 'returned_upward'].includes(kindName(ev.kind)));
  const last = returns[returns.length - 1];
  if (!last) return null;
  if (last.reason) return last.reason;
  const kind = last.kind as Record<string, unknown> | undefined;
  return kind && typeof kind.reason === 'string' ? kind.reason : '';
}

// special_flag: the study of a flagged order concluded (W-14); the flag itself never
// closes.
export const CLOSE_REASON_LABELS: Record<string, string> = labels.close_reason;

/** A closing reason (`"satisfied"` or `{"judgement": "law_or_policy"}`) in Chinese. */
export function closeReasonText(reason: unknown): string {
  if (typeof reason === 'string') return CLOSE_REASON_LABELS[reason] ?? reason;
  if (reason && typeof reason === 'object') {
    const key = Object.keys(reason)[0] ?? '';
    return CLOSE_REASON_LABELS[key] ?? key;
  }
  return '';
}

/** A wait (Retry-After seconds) for people: `30 秒`, `15 分钟` (rounded up). */
export function formatWait(secs: number): string {
  if (!Number.isFinite(secs) || secs <= 0) return '稍后';
  if (secs < 60) return `${Math.ceil(secs)} 秒`;
  return `${Math.ceil(secs / 60)} 分钟`;
}

export type LimitKind = 'transfer' | 'feedback' | 'callback' | 'report';

/** Year, month, day, hour and minute of an instant in Beijing time (UTC+8, no DST). */
function beijing(ms: number): { y: number; mo: number; d: number; h: number; mi: number } {
  const t = new Date(ms + 8 * 60 * 60 * 1000);
  return { y: t.getUTCFullYear(), mo: t.getUTCMonth() + 1, d: t.getUTCDate(), h: t.getUTCHours(), mi: t.getUTCMinutes() };
}

/** A limit as a bureau writes it: `12月8日 24:00` in Beijing time. A limit at 00:00 is
 * 24:00 of the day before (working-day limits end at 24:00); the year is written when
 * it is not the year of `now` (`2027年1月5日 24:00`). Accepts an instant or the server's
 * display text (`2026-12-08T24:00+08:00`). */
export function formatDue(due: string | null | undefined, now: Date = new Date()): string {
  if (!due) return '—';
  const nowYear = beijing(now.getTime()).y;
  const write = (y: number, mo: number, d: number, time: string) =>
    `${y === nowYear ? '' : `${y}年`}${mo}月${d}日 ${time}`;
  const end = /^(\d{4})-(\d{2})-(\d{2})T24:00(?::00)?(?:\+08:00)?$/.exec(due);
  if (end) return write(Number(end[1]), Number(end[2]), Number(end[3]), '24:00');
  const ms = Date.parse(due);
  if (Number.isNaN(ms)) return due;
  const t = beijing(ms);
  if (t.h === 0 && t.mi === 0 && (ms / 1000) % 60 === 0) {
    const day = beijing(ms - DAY_MS);
    return write(day.y, day.mo, day.d, '24:00');
  }
  return write(t.y, t.mo, t.d, `${pad(t.h)}:${pad(t.mi)}`);
}

/** The span of a limit (`1个工作日`, `1小时`) from the server's deadline fields. */
export function limitSpan(deadlines: Record<string, unknown> | null | undefined, which: LimitKind): string | null {
  if (!deadlines) return null;
  const hours = deadlines[`${which}_hours`];
  if (typeof hours === 'number') return `${hours}小时`;
  const days = deadlines[`${which}_working_days`];
  if (typeof days === 'number') return `${days}个工作日`;
  return null;
}

/** A limit with its span: `12月8日 24:00（1个工作日）`. */
export function deadlineText(
  deadlines: Record<string, unknown> | null | undefined,
  which: LimitKind,
  now: Date = new Date(),
): string {
  if (!deadlines) return '—';
  const due = (deadlines[`${which}_due`] ?? deadlines[`${which}_due_display`]) as string | null | undefined;
  if (!due) return '—';
  const span = limitSpan(deadlines, which);
  return span ? `${formatDue(due, now)}（${span}）` : formatDue(due, now);
}

/** Time left to a limit. Working-day limits count working days by the server's calendar
 * (`*_working_days_left`: days after today up to the limit's day; 0 = due today 24:00;
 * negative = working days begun since the limit): `剩余 2个工作日`, `今日24:00到期`,
 * `超时 1个工作日`. Hour limits (urgent transfer) count the clock. */
export function remainingText(
  deadlines: Record<string, unknown> | null | undefined,
  which: LimitKind,
  now: Date,
): string {
  if (!deadlines) return '—';
  const due = deadlines[`${which}_due`] as string | null | undefined;
  if (!due) return '—';
  const left = deadlines[`${which}_working_days_left`];
  const dueMs = Date.parse(due);
  if (typeof left !== 'number' || Number.isNaN(dueMs)) return formatRemaining(due, now);
  if (now.getTime() >= dueMs) return left < 0 ? `超时 ${-left}个工作日` : '已超时';
  if (left > 0) return `剩余 ${left}个工作日`;
  return '今日24:00到期';
}

/** One ledger event for people: what happened, the detail, who (name, never login id). */
export interface TimelineEntry {
  what: string;
  extra: string;
  who: string;
  text: string;
}

export function timelineEntry(
  ev: { actor?: string; actor_name?: string | null; role?: string; kind?: unknown; reason?: string | null },
  unitName: (id: string) => string,
): TimelineEntry {
  const name = kindName(ev.kind);
  const kind = (ev.kind && typeof ev.kind === 'object' ? ev.kind : {}) as Record<string, unknown>;
  const str = (v: unknown) => (typeof v === 'string' ? v : '');
  let extra = '';
  switch (name) {
    case 'dispatched':
    case 'helping_units_added':
      extra = Array.isArray(kind.units) ? `→ ${(kind.units as string[]).map(unitName).join('、')}` : '';
      break;
    case 'returned_upward':
    case 'escalated_for_second_callback':
      extra = kind.to_unit ? `→ ${unitName(str(kind.to_unit))}` : '';
      break;
    case 'signed':
      extra = kind.unit ? `${unitName(str(kind.unit))}${kind.lead ? '（主办）' : '（协办）'}` : '';
      break;
    case 'returned':
    case 'dissatisfaction_reported':
      extra = kind.unit ? unitName(str(kind.unit)) : '';
      break;
    case 'callback_recorded':
      extra = [
        label(CALLBACK_ROUND_LABELS, kind.round),
        label(SATISFACTION_LABELS, kind.satisfaction),
        kind.by_name ? `回访人 ${str(kind.by_name)}` : '',
      ]
        .filter((t) => t && t !== '—')
        .join(' · ');
      break;
    case 'call_survey_recorded':
      extra = label(CALL_SURVEY_LABELS, kind.answer);
      break;
    case 'redo_ordered':
      extra = label(REDO_TARGET_LABELS, kind.target);
      break;
    case 'reminded':
      extra = `${label(LIMIT_LABELS, kind.deadline)} · ${label(REMINDER_LEVEL_LABELS, kind.level)}`;
      break;
    case 'limit_missed':
      extra = `${label(LIMIT_LABELS, kind.deadline)}（${formatDue(str(kind.due))}）`;
      break;
    case 'call_logged':
      extra = callLogText(kind.call, unitName);
      break;
    case 'extension_approved':
      extra = typeof kind.feedback_working_days === 'number' ? `反馈时限共 ${kind.feedback_working_days}个工作日` : '';
      break;
  }
  const text =
    name === 'call_logged'
      ? ''
      : name === 'closed'
      ? [closeReasonText(kind.reason), str(kind.note)].filter(Boolean).join('：')
      : (ev.reason ??
        [kind.reason, kind.text, kind.note, kind.answer, kind.result, kind.explanation].find(
          (t): t is string => typeof t === 'string' && t !== '' && !(t in CALL_SURVEY_LABELS),
        ) ??
        '');
  const who = ev.actor_name || (ev.role ? `${label(ROLE_LABELS, ev.role)}（已停用账号）` : '—');
  return { what: EVENT_LABELS[name] ?? COMMAND_LABELS[name] ?? name, extra, who, text };
}

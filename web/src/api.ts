// Thin client for the hotline HTTP API (see API.md): JSON, session cookie, CSRF header
// on writes, typed errors carrying the server's `code`.

export interface ApiErrorBody {
  code: string;
  message?: string;
  field?: string;
}

export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
    public field?: string,
    public retryAfterSecs?: number,
  ) {
    super(message);
  }
}

const CSRF_KEY = 'hotline.csrf';

export function setCsrf(token: string | null): void {
  if (token) sessionStorage.setItem(CSRF_KEY, token);
  else sessionStorage.removeItem(CSRF_KEY);
}

function csrf(): string {
  return sessionStorage.getItem(CSRF_KEY) ?? '';
}

export async function api<T>(
  method: string,
  path: string,
  body?: unknown,
  extraHeaders: Record<string, string> = {},
): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json', ...extraHeaders };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && method !== 'HEAD') headers['X-CSRF-Token'] = csrf();
  const resp = await fetch(path, {
    method,
    headers,
    credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (resp.status === 204) return undefined as T;
  const text = await resp.text();
  let parsed: unknown = undefined;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  if (!resp.ok) {
    const err = (parsed ?? {}) as Partial<ApiErrorBody>;
    const retry = Number(resp.headers.get('Retry-After') ?? '');
    throw new ApiError(
      resp.status,
      err.code ?? `http_${resp.status}`,
      err.message ?? `${resp.status} ${resp.statusText}`,
      err.field,
      Number.isFinite(retry) && retry > 0 ? retry : undefined,
    );
  }
  return parsed as T;
}

export const get = <T>(path: string) => api<T>('GET', path);
export const post = <T>(path: string, body: unknown = {}) => api<T>('POST', path, body);
export const put = <T>(path: string, body: unknown) => api<T>('PUT', path, body);

/** Whether an error means "this endpoint does not exist on this server (yet)". */
export function isMissing(e: unknown): boolean {
  return e instanceof ApiError && (e.status === 404 || e.status === 501);
}

// ---- shapes (as documented in API.md; read defensively) ----

export interface Me {
  id: string;
  name: string;
  roles: string[];
  unit: string;
  unit_name?: string;
  /** The queue agent (softphone extension) this user works as. */
  agent?: string | null;
  /** The server's clock when this was answered (see clock.ts). */
  server_time?: string;
}

export interface Deadlines {
  transfer_due?: string | null;
  feedback_due?: string | null;
  callback_due?: string | null;
  provisional?: boolean;
  /** Span of each limit: working days, or hours for the urgent transfer. */
  transfer_working_days?: number | null;
  transfer_hours?: number | null;
  feedback_working_days?: number | null;
  callback_working_days?: number | null;
  /** Working days after today up to the limit's day by the server calendar (0: due
   * today 24:00; negative: working days begun since the limit); null for hour limits. */
  transfer_working_days_left?: number | null;
  feedback_working_days_left?: number | null;
  callback_working_days_left?: number | null;
}

export interface Order {
  id: string;
  /** Short number read out on the phone (`鲁12348-20261207-0042`); null on old orders. */
  number?: string | null;
  version: number;
  state: string;
  fields: Record<string, unknown>;
  units?: unknown[];
  lead_unit?: string | null;
  /** 协办单位 (W-11): the units handling besides the lead, `{unit, status}`. */
  helping_units?: unknown[];
  deadlines?: Deadlines | null;
  reminder?: 'none' | 'yellow' | 'red';
  overdue?: boolean;
  special_flag?: boolean;
  closing?: Record<string, unknown> | null;
  allowed_commands?: string[];
  [key: string]: unknown;
}

export interface OrderPage {
  items: Order[];
  total: number;
  page: number;
  per_page: number;
}

export interface Unit {
  id: string;
  name: string;
  kind: string;
  parent?: string | null;
}

export interface LedgerEvent {
  seq: number;
  at: string;
  actor: string;
  role?: string;
  unit?: string;
  state_before?: string | null;
  state_after?: string | null;
  kind?: unknown;
  reason?: string | null;
  hash?: string;
}

export interface RankingRow {
  rank: number;
  unit?: string;
  unit_name?: string;
  category?: string;
  orders: number;
  completion_rate?: number | null;
  on_time_rate?: number | null;
  satisfaction_rate?: number | null;
  returns?: number;
  overdue?: number;
  withdrawn?: number;
  /** province | city | county | township | institution: `rank` is within this level. */
  level?: string;
  sign_in_rate?: number | null;
  /** First dispatch within 1 working day (urgent: 1 hour) of receipt. */
  transfer_rate?: number | null;
  combined_score?: number | null;
  /** by=area: the business area (unit_name is its Chinese name). */
  business_area?: string;
}

/** `[ranking.weights]`: the combined score's weights, as the server used them. */
export type RankingWeights = Record<string, number>;

export interface Rankings {
  period: string;
  group?: string;
  by: string;
  metric?: string;
  weights?: RankingWeights;
  rows: RankingRow[];
}

export interface QueueAgent {
  id: string;
  name: string;
  state: string;
  pause_reason?: string | null;
  call_id?: string | null;
  wrap_up_until?: string | null;
  wrap_up_left_ms?: number | null;
}

export interface QueueState {
  city: string;
  waiting: number;
  longest_wait_secs: number;
  agents: QueueAgent[];
  answered_today: number;
  abandoned_today: number;
}

export function sendCommand(order: Order, command: string, fields: Record<string, unknown> = {}) {
  return post<Order>(`/api/orders/${encodeURIComponent(order.id)}/${command}`, {
    ...fields,
    version: order.version,
  });
}

export interface OrderStats {
  period: string | null;
  unit: string;
  as_of: string;
  total: number;
  by_state: Record<string, number>;
  open: number;
  overdue_open: number;
  overdue: number;
  due_today: number;
  special_flag: number;
  satisfaction: {
    rated: number;
    satisfied: number;
    basically_satisfied: number;
    dissatisfied: number;
    rate: number | null;
  };
}

/** The URL of a call's recording (the server audits each request). */
export function recordingUrl(callId: string): string {
  return `/api/recordings/${encodeURIComponent(callId)}`;
}

import { describe, expect, it } from 'vitest';
import {
  byDeadline,
  contactOf,
  currentDue,
  deadlineMark,
  formatDateTime,
  formatRate,
  formatRemaining,
  formatSeconds,
  formatWait,
  dueText,
  lastReturnReason,
  tidyDisplay,
  closeReasonText,
  periodOf,
  unitIds,
  agentStateName,
  agentStateExplanation,
  localDeadline,
  weightsText,
} from './format';

const deadlines = {
  transfer_due: '2026-11-27T16:00:00+08:00',
  feedback_due: '2026-12-04T24:00:00+08:00'.replace('24:00:00', '23:59:59'),
  callback_due: null,
};

describe('currentDue', () => {
  it('runs against the transfer limit before dispatch and feedback after', () => {
    expect(currentDue({ state: 'pending_dispatch', deadlines })).toBe(deadlines.transfer_due);
    expect(currentDue({ state: 'signed', deadlines })).toBe(deadlines.feedback_due);
    expect(currentDue({ state: 'closed', deadlines })).toBeNull();
    expect(currentDue({ state: 'special_study', deadlines })).toBeNull();
  });
});

describe('deadlineMark', () => {
  const order = { state: 'pending_dispatch', deadlines } as const;
  it('is none well before the limit', () => {
    expect(deadlineMark(order, new Date('2026-11-25T08:00:00+08:00'))).toBe('none');
  });
  it('is yellow within a day of the limit', () => {
    expect(deadlineMark(order, new Date('2026-11-27T08:00:00+08:00'))).toBe('yellow');
  });
  it('is red at and after the limit', () => {
    expect(deadlineMark(order, new Date('2026-11-27T16:00:00+08:00'))).toBe('red');
  });
  it("trusts the server's reminder and overdue flags over the clock", () => {
    const early = new Date('2026-11-01T00:00:00+08:00');
    expect(deadlineMark({ ...order, reminder: 'yellow' }, early)).toBe('yellow');
    expect(deadlineMark({ ...order, overdue: true }, early)).toBe('red');
  });
  it('never marks a closed order', () => {
    expect(deadlineMark({ ...order, state: 'closed', overdue: true }, new Date())).toBe('none');
  });
});

describe('byDeadline', () => {
  it('sorts earliest limit first and orders without a limit last', () => {
    const a = { id: 'a', state: 'signed', deadlines };
    const b = { id: 'b', state: 'pending_dispatch', deadlines };
    const c = { id: 'c', state: 'closed', deadlines };
    expect(byDeadline([c, a, b]).map((o) => o.id)).toEqual(['b', 'a', 'c']);
  });
});

describe('formatting', () => {
  it('shows Beijing time whatever the input offset', () => {
    expect(formatDateTime('2026-11-28T06:05:00Z')).toBe('2026-11-28 14:05');
    expect(formatDateTime(null)).toBe('—');
  });
  it('says time left or overdue in Chinese', () => {
    const now = new Date('2026-11-28T00:00:00Z');
    expect(formatRemaining('2026-11-30T03:00:00Z', now)).toBe('剩余 2天3小时');
    expect(formatRemaining('2026-11-27T19:00:00Z', now)).toBe('超时 5小时0分');
  });
  it('formats rates and seconds', () => {
    expect(formatRate(0.935)).toBe('93.5%');
    expect(formatRate(null)).toBe('—');
    expect(formatSeconds(125)).toBe('2:05');
  });
  it('reads contacts and units in either shape', () => {
    expect(contactOf({ contact: { name: '张三', phone: '138****5678' } }).phone).toBe('138****5678');
    expect(contactOf({ contact_name: '李四', contact_phone: '139****0000' }).name).toBe('李四');
    expect(unitIds(['jinan', { unit: 'qingdao', status: 'signed' }])).toEqual(['jinan', 'qingdao']);
  });
  it('names ranking periods in Beijing time', () => {
    const newYearsEveUtc = new Date('2026-12-31T17:00:00Z'); // 2027-01-01 01:00 in Beijing
    expect(periodOf(newYearsEveUtc, 'month')).toBe('2027-01');
    expect(periodOf(newYearsEveUtc, 'quarter')).toBe('2027-Q1');
    expect(periodOf(new Date('2026-11-28T00:00:00Z'), 'quarter')).toBe('2026-Q4');
  });
});

describe('ledger helpers', () => {
  it('finds the latest return reason, from the row or the event kind', () => {
    const events = [
      { kind: { type: 'created' } },
      { kind: { type: 'returned', unit: 'a', reason: '不属于本单位' }, reason: null },
      { kind: { type: 'dispatched', units: ['b'] } },
      { kind: { type: 'returned', unit: 'b', reason: '非本辖区' }, reason: '非本辖区' },
    ];
    expect(lastReturnReason(events)).toBe('非本辖区');
    expect(lastReturnReason(events.slice(0, 3))).toBe('不属于本单位');
    expect(lastReturnReason(events.slice(0, 1))).toBeNull();
  });
  it("prefers the server's 24:00 display text for a limit", () => {
    const d = { feedback_due: '2026-12-04T16:00:00Z', feedback_due_display: '2026-12-04T24:00+08:00' };
    expect(dueText(d, 'feedback')).toBe('2026-12-04 24:00');
    expect(dueText({ transfer_due: '2026-11-28T06:05:00Z' }, 'transfer')).toBe('2026-11-28 14:05');
  });
});

describe('display text', () => {
  it('tidies the server display of limits and keeps foreign offsets visible', () => {
    expect(tidyDisplay('2026-11-28T13:21:57+08:00')).toBe('2026-11-28 13:21');
    expect(tidyDisplay('2026-11-28T13:21Z')).toBe('2026-11-28 13:21 (Z)');
    expect(tidyDisplay('tomorrow')).toBe('tomorrow');
  });
  it('names closing reasons in Chinese', () => {
    expect(closeReasonText('satisfied')).toBe('回访满意办结');
    expect(closeReasonText({ judgement: 'law_or_policy' })).toBe('依法办结');
  });
});

describe('formatWait', () => {
  it('rounds a Retry-After up to whole minutes past a minute', () => {
    expect(formatWait(898)).toBe('15 分钟');
    expect(formatWait(30)).toBe('30 秒');
    expect(formatWait(0)).toBe('稍后');
  });
});

describe('agent state helpers', () => {
  it('strips the pause reason from a state', () => {
    expect(agentStateName('paused:用餐')).toBe('paused');
    expect(agentStateName('wrap_up')).toBe('wrap_up');
    expect(agentStateName(undefined)).toBe('');
  });
  it('tells an offline agent that the softphone is the cause', () => {
    expect(agentStateExplanation('offline', 'registration_lost')).toContain('软电话未注册');
    expect(agentStateExplanation('offline', null)).toContain('软电话未注册');
    expect(agentStateExplanation('offline', 'agent_lost')).toContain('没有响应');
    expect(agentStateExplanation('available', 'restored')).toContain('自动恢复');
    expect(agentStateExplanation('available', 'sign_in')).toBeNull();
  });
});

describe('localDeadline', () => {
  it('moves the server span onto the browser clock', () => {
    expect(localDeadline('2026-02-14T10:00:30+08:00', '2026-02-14T10:00:00+08:00', 1_000)).toBe(31_000);
    expect(localDeadline(null, '2026-02-14T10:00:00+08:00', 1_000)).toBeNull();
    expect(localDeadline('x', '2026-02-14T10:00:00+08:00', 1_000)).toBeNull();
  });
});

describe('weightsText', () => {
  it('prints each weighted figure with its share, leaving out zero weights', () => {
    expect(
      weightsText({ completion_rate: 0.2, on_time_rate: 0.3, satisfaction_rate: 0.3, sign_in_rate: 0.1, transfer_rate: 0.1 }),
    ).toBe('办结率 20% · 按时办结率 30% · 满意率 30% · 签到率 10% · 转办及时率 10%');
    expect(weightsText({ completion_rate: 0, transfer_rate: 2 })).toBe('转办及时率 100%');
    expect(weightsText({ completion_rate: 0 })).toBe('—');
    expect(weightsText(undefined)).toBe('—');
  });
});

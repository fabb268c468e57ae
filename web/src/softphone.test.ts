import { describe, expect, it } from 'vitest';
import { micErrorText } from './softphone';

describe('micErrorText', () => {
  it('tells the agent how to allow a microphone the browser denied', () => {
    const text = micErrorText(new DOMException('Permission denied', 'NotAllowedError'));
    expect(text).toContain('拒绝了麦克风');
    expect(text).toContain('允许');
  });
  it('names a missing microphone and passes other errors on', () => {
    expect(micErrorText(new DOMException('none', 'NotFoundError'))).toContain('没有找到麦克风');
    expect(micErrorText(new Error('boom'))).toContain('boom');
  });
});

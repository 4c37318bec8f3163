import { describe, expect, it } from 'vitest';
import { href, parse } from './route';

describe('hash routes', () => {
  it('round-trip', () => {
    expect(parse('')).toEqual({ page: 'messages', cursor: null });
    expect(parse(href.messages('abc/=='))).toEqual({ page: 'messages', cursor: 'abc/==' });
    expect(parse(href.message('01JD'))).toEqual({ page: 'message', id: '01JD' });
    expect(parse(href.policy())).toEqual({ page: 'policy' });
    expect(parse('#/nope')).toEqual({ page: 'messages', cursor: null });
  });
});

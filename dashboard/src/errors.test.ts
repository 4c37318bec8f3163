import { describe, expect, it } from 'vitest';
import { ApiError, NetworkError, audienceQuery } from './api';
import { describe as words } from './errors';

describe('API errors in words', () => {
  it('use the API’s own message for the window, the fields and the actions', () => {
    const e = new ApiError(422, 'send_at_out_of_window', 'Unprocessable', 'send_at must be at most 2026-12-31T10:00:00Z (the source’s created_at + 30 days)');
    expect(words(e)).toBe('Send_at must be at most 2026-12-31T10:00:00Z (the source’s created_at + 30 days).');
    expect(words(new ApiError(400, 'invalid_request', 'Bad', 'contents.body: required'))).toBe('Contents.body: required.');
  });
  it('explain what a person can do about the others', () => {
    expect(words(new ApiError(401, 'unauthorized', 'Unauthorized', 'x'))).toMatch(/API key was not accepted/);
    expect(words(new ApiError(403, 'plan_required', 'Forbidden', 'x'))).toMatch(/paid plan/);
    expect(words(new ApiError(410, 'source_expired', 'Gone', 'x'))).toMatch(/older than 30 days/);
    expect(words(new ApiError(409, 'already_dispatched', 'Conflict', 'x'))).toMatch(/can no longer be cancelled/);
    expect(words(new ApiError(422, 'channel_not_configured', 'x', 'x'))).toMatch(/no provider credentials/);
  });
  it('fall back to the detail, then the title, and tell a network failure apart', () => {
    expect(words(new ApiError(418, 'teapot', 'I am a teapot', 'short and stout'))).toBe('Short and stout.');
    expect(words(new ApiError(418, 'teapot', 'I am a teapot', ''))).toBe('I am a teapot.');
    expect(words(new NetworkError('TypeError: Failed to fetch'))).toMatch(/could not be reached/);
    expect(words(new Error('boom'))).toMatch(/unexpected/);
  });
});

describe('audience query', () => {
  it('is action=… or did=…&did_not=…, with the channel', () => {
    expect(audienceQuery({ action: 'not_clicked', channel: 'sms' })).toBe('action=not_clicked&channel=sms');
    expect(audienceQuery({ did: ['delivered', 'opened'], did_not: ['clicked'], channel: 'email' })).toBe('did=delivered%2Copened&did_not=clicked&channel=email');
    expect(audienceQuery({ did: [], did_not: ['clicked'], channel: 'push' })).toBe('did_not=clicked&channel=push');
  });
});

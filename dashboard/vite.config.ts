/// <reference types="vitest/config" />
import { defineConfig } from 'vite';

// Served by functions/dashboard under /dashboard (same origin as the API): every asset URL
// starts with it, hashed names under assets/ are cached as immutable.
export default defineConfig({
  base: '/dashboard/',
  build: {
    target: 'es2022',
    // The policy forbids inline scripts and styles: nothing may be inlined as a data: URL either.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    sourcemap: false,
    reportCompressedSize: false,
  },
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
    // The local-time tests need a zone with DST that is not UTC.
    env: { TZ: 'Europe/Paris' },
  },
});

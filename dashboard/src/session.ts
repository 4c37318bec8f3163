// The API key lives in this tab's session storage only: closing the tab or signing out forgets it.
const KEY = 'retarget.apiKey';

export const session = {
  get: (): string | null => sessionStorage.getItem(KEY),
  set: (key: string) => sessionStorage.setItem(KEY, key),
  clear: () => sessionStorage.removeItem(KEY),
};

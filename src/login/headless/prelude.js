// Helpers evaluated ahead of every script the headless login runs in a frame (see driver.rs):
// visibility, the `text=` and `CSS >> nth=N` selector forms, and the first visible match of a list.
const __vis = (el) => {
  if (!el || !el.isConnected) return false;
  const r = el.getBoundingClientRect();
  if (r.width <= 0 || r.height <= 0) return false;
  const s = getComputedStyle(el);
  return s.visibility !== 'hidden' && s.display !== 'none' && s.opacity !== '0';
};
const __byText = (t) => {
  const out = [];
  for (const el of document.querySelectorAll('a,button,div,span,li,label,p,input[type=button],input[type=submit]')) {
    const txt = el.tagName === 'INPUT' ? (el.value || '') : (el.textContent || '');
    if (txt.trim() === t) out.push(el);
  }
  return out;
};
const __find = (sel) => {
  try {
    const m = sel.match(/^(.*?)\s*>>\s*nth=(\d+)$/);
    if (m) return document.querySelectorAll(m[1])[Number(m[2])] || null;
    if (sel.startsWith('text=')) {
      const els = __byText(sel.slice(5));
      return els.filter(__vis).pop() || null;
    }
    return document.querySelector(sel);
  } catch (e) { return null; }
};
const __first = (sels) => {
  for (const s of sels) { const el = __find(s); if (el && __vis(el)) return el; }
  return null;
};

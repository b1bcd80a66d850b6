// The workspace's keymap as data: one table feeds both the key handler and the shortcut overlay.
// Pure: nothing here touches the DOM or does work on import.

/** Each entry: the keys, the action's name, and the help text the overlay shows. */
export const KEYMAP = [
  { keys: ["Tab", "j", "ArrowRight", "ArrowDown"], action: "next", help: "Next box" },
  { keys: ["Shift+Tab", "k", "ArrowLeft", "ArrowUp"], action: "previous", help: "Previous box" },
  { keys: ["Enter", " "], action: "confirm", help: "Confirm the selected box" },
  { keys: ["Shift+Enter"], action: "confirmRemaining", help: "Confirm all remaining boxes" },
  { keys: ["/"], action: "search", help: "Search the catalogue" },
  { keys: ["Delete", "Backspace", "x"], action: "remove", help: "Delete the selected box" },
  { keys: ["n"], action: "draw", help: "Draw a new box" },
  { keys: ["u", "Ctrl+z"], action: "undo", help: "Undo" },
  { keys: ["U", "Ctrl+Shift+z", "Ctrl+y"], action: "redo", help: "Redo" },
  { keys: ["s", "Ctrl+Enter"], action: "submit", help: "Submit the frame" },
  { keys: ["+", "="], action: "zoomIn", help: "Zoom in" },
  { keys: ["-", "_"], action: "zoomOut", help: "Zoom out" },
  { keys: ["0"], action: "fit", help: "Fit the frame" },
  { keys: ["z"], action: "zoomToBox", help: "Zoom to the selected box" },
  { keys: ["Shift+ArrowLeft", "Shift+ArrowRight", "Shift+ArrowUp", "Shift+ArrowDown"], action: "pan", help: "Pan" },
  { keys: ["1", "2", "3", "4", "5", "6", "7", "8", "9"], action: "pickCandidate", help: "Pick candidate 1-9" },
  { keys: ["?"], action: "help", help: "Show this help" },
  { keys: ["Escape"], action: "cancel", help: "Cancel drawing / close" },
];

/** The chord name of a keyboard event-like object, e.g. "Ctrl+Shift+z". */
export function chordOf({ key, ctrlKey = false, metaKey = false, shiftKey = false, altKey = false }) {
  const ctrl = ctrlKey || metaKey;
  let name = key.length === 1 && (ctrl || !shiftKey) ? key.toLowerCase() : key;
  if (key.length === 1 && shiftKey && !ctrl) name = key; // "U", "?", "+" as typed
  const mods = [];
  if (ctrl) mods.push("Ctrl");
  if (altKey) mods.push("Alt");
  if (shiftKey && (key.length > 1 || ctrl)) mods.push("Shift");
  return [...mods, name].join("+");
}

/** The action for an event-like object, or null; `argument` carries a candidate's index. */
export function resolveKey(event, keymap = KEYMAP) {
  const chord = chordOf(event);
  for (const entry of keymap) {
    const index = entry.keys.indexOf(chord);
    if (index !== -1) {
      return entry.action === "pickCandidate" ? { action: entry.action, argument: index } : { action: entry.action };
    }
  }
  return null;
}

/** Rows for a shortcut overlay: [{keys: "Tab, j, …", help}]. */
export function overlayRows(keymap = KEYMAP) {
  return keymap.map((entry) => ({ keys: entry.keys.map((k) => (k === " " ? "Space" : k)).join(", "), help: entry.help }));
}

// Markdown of a streaming answer drawn as it comes, safe by construction: every node is made with
// createElement and every piece of text set with textContent, so no HTML in the answer is ever
// parsed (a <script> or an <img onerror> is shown as text). Links keep http(s), mailto and
// same-site paths only. It draws the subset the server's renderer (ai/markdown.py) draws the same
// way (headings, paragraphs with line breaks, emphasis, code, lists, quotes, rules, links), so the
// saved answer that replaces it at the end does not jump. While streaming (`open`), what is not
// finished yet is drawn as it will end: an unclosed **bold or `code runs to the end, an unclosed
// code fence is a code block, and a last line that may still become something else is held back.

const SAFE_HREF = /^(https?:\/\/|mailto:|\/(?!\/))/i;
const FENCE = /^ {0,3}(`{3,}|~{3,})(.*)$/;
const HEADING = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
const RULE = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
const SETEXT = /^ {0,3}(=+|-+)[ \t]*$/;
const ITEM = /^( {0,3})([-*+]|\d{1,9}[.)])([ \t]+|$)(.*)$/;
const QUOTE = /^ {0,3}> ?(.*)$/;
// A last line that the next token may still turn into a heading, a rule, a list or a fence.
const UNDECIDED = /^ {0,3}([-=*_+#`~>|]{1,2}|\d{1,9}[.)]?)[ \t]*$/;

function make(tag, text) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  return node;
}

// --- inline -----------------------------------------------------------------------------------

const PAIRS = [["**", "strong"], ["__", "strong"], ["~~", "del"], ["*", "em"], ["_", "em"]];

function closing(text, marker, from) {
  // The next closer of `marker`: not preceded by a space (CommonMark's right-flanking rule, simplified).
  let at = text.indexOf(marker, from);
  while (at !== -1) {
    if (at > from && !/\s/.test(text[at - 1]) && (marker.length > 1 || text[at + 1] !== marker)) return at;
    at = text.indexOf(marker, at + marker.length);
  }
  return -1;
}

function inline(text, open, into) {
  let plain = "";
  const flush = () => { if (plain) { into.append(plain); plain = ""; } };
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === "\\" && i + 1 < text.length && /[!-/:-@[-`{-~]/.test(text[i + 1])) {
      plain += text[i + 1];
      i += 2;
      continue;
    }
    if (c === "`") {
      const ticks = text.slice(i).match(/^`+/)[0];
      const end = text.indexOf(ticks, i + ticks.length);
      if (end !== -1 || open) {
        flush();
        const code = text.slice(i + ticks.length, end === -1 ? text.length : end);
        into.append(make("code", code.length > 2 && code.startsWith(" ") && code.endsWith(" ") ? code.slice(1, -1) : code));
        i = end === -1 ? text.length : end + ticks.length;
        continue;
      }
    }
    if (c === "[") {
      const link = text.slice(i).match(/^\[([^\]\n]*)\]\(([^)\s]*)(?:\s+"[^"]*")?\)/);
      if (link) {
        flush();
        if (SAFE_HREF.test(link[2])) {
          const a = make("a");
          a.href = link[2];
          a.rel = "noopener noreferrer nofollow";
          inline(link[1], false, a);
          into.append(a);
        } else {
          inline(link[1], false, into);
        }
        i += link[0].length;
        continue;
      }
      const unfinished = open && text.slice(i).match(/^\[([^\]\n]*)\]\([^)\s]*$/);
      if (unfinished) {
        flush();
        inline(unfinished[1], false, into); // the link's text now, its address once it is whole
        i = text.length;
        continue;
      }
    }
    const pair = PAIRS.find(([marker]) => text.startsWith(marker, i));
    if (pair) {
      const [marker, tag] = pair;
      const after = text[i + marker.length];
      const before = i > 0 ? text[i - 1] : " ";
      const opens = after !== undefined && !/\s/.test(after) && (marker[0] !== "_" || !/[\p{L}\p{N}]/u.test(before));
      if (opens) {
        const end = closing(text, marker, i + marker.length);
        if (end !== -1 || open) {
          flush();
          const node = make(tag);
          inline(text.slice(i + marker.length, end === -1 ? text.length : end), open && end === -1, node);
          into.append(node);
          i = end === -1 ? text.length : end + marker.length;
          continue;
        }
      } else if (open && after === undefined) {
        i += marker.length; // a marker with nothing after it yet: its text comes with the next token
        continue;
      }
    }
    plain += c;
    i += 1;
  }
  flush();
}

function lines(parent, texts, open) {
  // A paragraph's lines, joined by line breaks (the server renders with "breaks": true).
  texts.forEach((line, index) => {
    if (index) parent.append(make("br"));
    inline(line.replace(/^[ \t]+/, ""), open && index === texts.length - 1, parent);
  });
}

// --- blocks -----------------------------------------------------------------------------------

function blocks(source, open, into) {
  const all = source.split("\n");
  if (open && all.length && UNDECIDED.test(all[all.length - 1])) all.pop();
  let i = 0;
  let paragraph = null;
  const endParagraph = () => {
    if (paragraph) {
      const p = make("p");
      lines(p, paragraph, open && i >= all.length);
      into.append(p);
      paragraph = null;
    }
  };
  while (i < all.length) {
    const line = all[i];
    let match;
    if (!line.trim()) {
      endParagraph();
      i += 1;
    } else if ((match = line.match(FENCE)) && !(match[1][0] === "`" && match[2].includes("`"))) {
      endParagraph();
      const fence = match[1];
      const code = [];
      i += 1;
      while (i < all.length && !new RegExp(`^ {0,3}${fence[0]}{${fence.length},}[ \\t]*$`).test(all[i])) code.push(all[i++]);
      if (i >= all.length && code.length && !code[code.length - 1]) code.pop(); // unclosed: the last newline is no line yet
      i += 1; // the closing fence (or the end)
      const pre = make("pre");
      const language = match[2].trim().split(/\s+/)[0];
      const codeNode = make("code", code.length ? `${code.join("\n")}\n` : "");
      if (language && /^[\w-]+$/.test(language)) codeNode.className = `language-${language}`;
      pre.append(codeNode);
      into.append(pre);
    } else if (paragraph && (match = line.match(SETEXT))) {
      const heading = make(match[1][0] === "=" ? "h1" : "h2");
      lines(heading, paragraph, false);
      paragraph = null;
      into.append(heading);
      i += 1;
    } else if ((match = line.match(HEADING))) {
      endParagraph();
      const heading = make(`h${match[1].length}`);
      inline(match[2] || "", open && i === all.length - 1, heading);
      into.append(heading);
      i += 1;
    } else if (RULE.test(line)) {
      endParagraph();
      into.append(make("hr"));
      i += 1;
    } else if ((match = line.match(QUOTE))) {
      endParagraph();
      const quoted = [];
      while (i < all.length && all[i].trim() && (match = all[i].match(QUOTE) || (quoted.length && [null, all[i]]))) {
        quoted.push(match[1]);
        i += 1;
      }
      const quote = make("blockquote");
      blocks(quoted.join("\n"), open && i >= all.length, quote);
      into.append(quote);
    } else if ((match = line.match(ITEM)) && (!paragraph || match[4].trim())) {
      endParagraph();
      i = list(all, i, open, into);
    } else {
      (paragraph ||= []).push(line);
      i += 1;
    }
  }
  endParagraph();
}

function list(all, start, open, into) {
  const first = all[start].match(ITEM);
  const ordered = /\d/.test(first[2]);
  const node = make(ordered ? "ol" : "ul");
  if (ordered && parseInt(first[2], 10) !== 1) node.start = parseInt(first[2], 10);
  const items = [];
  let loose = false;
  let i = start;
  while (i < all.length) {
    const match = all[i].match(ITEM);
    if (!match || /\d/.test(match[2]) !== ordered) break;
    const indent = match[1].length + match[2].length + Math.max(1, Math.min(match[3].length, 4));
    const content = [match[4]];
    i += 1;
    while (i < all.length) {
      const line = all[i];
      if (!line.trim()) {
        // A blank line continues the item only if an indented line follows.
        if (i + 1 < all.length && /^\s/.test(all[i + 1]) && all[i + 1].trim()) { content.push(""); loose = true; i += 1; continue; }
        break;
      }
      if (/^\s/.test(line) || !(ITEM.test(line) || HEADING.test(line) || FENCE.test(line) || RULE.test(line) || QUOTE.test(line))) {
        content.push(line.slice(Math.min(indent, line.length - line.trimStart().length)));
        i += 1;
      } else {
        break;
      }
    }
    items.push(content);
    if (i < all.length && !all[i].trim() && i + 1 < all.length && ITEM.test(all[i + 1])) {
      loose = true;
      i += 1; // a blank line between items of one list
    }
  }
  items.forEach((content, index) => {
    const li = make("li");
    const last = open && i >= all.length && index === items.length - 1;
    const simple = content.every((line) => !ITEM.test(line) && !FENCE.test(line) && !QUOTE.test(line) && line.trim());
    if (simple && !loose) lines(li, content, last);
    else blocks(content.join("\n"), last, li);
    node.append(li);
  });
  into.append(node);
  return i;
}

/** Draw `text` (Markdown, untrusted) into `container`, replacing what it showed. */
export function renderMarkdown(container, text, {open = false} = {}) {
  const fragment = document.createDocumentFragment();
  blocks((text || "").replace(/\r\n?/g, "\n"), open, fragment);
  container.replaceChildren(fragment);
}

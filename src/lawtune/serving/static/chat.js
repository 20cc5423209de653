// The chat page: keeps the conversation in this tab (and localStorage), streams answers from
// POST /v1/chat/completions (server-sent events), and explains 503 (paused / busy / loading) and 429.
// With `lawtune serve --kb`, the finishing chunk carries `lawtune: {references, citations, degraded, quoted,
// attribution}` (attribution: the line naming the retrieved articles the answer repeats, shown under it): the
// articles the answer was given and the verdict of each citation, shown as expandable quotes under the answer.
// With `lawtune serve --tools builtin`, it carries `tools`: each call the server ran and its result, shown too.
"use strict";

const $ = (id) => document.getElementById(id);
const STORE = "lawtune-chat";
let history = JSON.parse(localStorage.getItem(STORE) || "[]");
let busy = false;

const NOTICES = {
  429: "请求过于频繁，请稍后再试。",
  503: "服务暂时不可用（维护中或繁忙），请稍后再试。",
  504: "回答超时，请缩短问题后重试。",
};

function showNotice(text) {
  $("notice").textContent = text;
  $("notice").hidden = !text;
}

function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  div.textContent = text;
  $("log").appendChild(div);
  $("log").scrollTop = $("log").scrollHeight;
  return div;
}

function addCopyButton(div, text) {
  const button = document.createElement("button");
  button.className = "copy";
  button.type = "button";
  button.textContent = "复制回答";
  button.onclick = async () => {
    try { await navigator.clipboard.writeText(text); button.textContent = "已复制"; }
    catch (e) { button.textContent = "复制失败，请手动选择文本"; }
  };
  div.appendChild(button);
}

// A server with API keys: the employee pastes the key once; it stays in this browser only.
function apiHeaders() {
  const headers = { "Content-Type": "application/json" };
  const key = localStorage.getItem("lawtune-api-key");
  if (key) headers["Authorization"] = "Bearer " + key;
  return headers;
}

function askForKey() {
  const key = window.prompt("此服务需要访问密钥（API key），请向管理员索取后粘贴：");
  if (!key || !key.trim()) return false;
  localStorage.setItem("lawtune-api-key", key.trim());
  return true;
}

function save() { localStorage.setItem(STORE, JSON.stringify(history)); }

const VERDICTS = {
  ok: "✓ 现行有效", outdated: "⚠ 旧版条文", repealed: "✗ 已废止",
  nonexistent_article: "✗ 条文不存在", unknown_law: "✗ 未知法律",
};

// <details class="refs"> with one <details class="ref"> per retrieved article (its text as a <blockquote>),
// then the verdict of each citation the answer makes. textContent only: article text is never parsed as HTML.
function addReferences(div, lawtune) {
  if (!lawtune || !(lawtune.references || []).length) return;
  if (lawtune.attribution) {  // the line naming the retrieved articles the answer repeats (lawtune.kb.attribution)
    const line = document.createElement("p");
    line.className = "attribution";
    line.textContent = lawtune.attribution;
    div.appendChild(line);
  }
  const quoted = new Set((lawtune.quoted || []).map((q) => q.law + "|" + q.article + "|" + q.sub));
  const box = document.createElement("details");
  box.className = "refs";
  const title = document.createElement("summary");
  title.textContent = "参考法条（" + lawtune.references.length + "）" + (lawtune.degraded ? "：服务降级，仅检索结果" : "");
  box.appendChild(title);
  for (const ref of lawtune.references) {
    const item = document.createElement("details");
    item.className = "ref";
    const head = document.createElement("summary");
    head.textContent = (ref.cite || ref.law) + (ref.version ? "（" + ref.version + "）" : "")
      + (quoted.has(ref.law + "|" + ref.article + "|" + ref.sub) ? " · 回答引用了其内容" : "");
    const quote = document.createElement("blockquote");
    quote.textContent = ref.text || "";
    item.append(head, quote);
    box.appendChild(item);
  }
  const cited = lawtune.citations || [];
  if (cited.length) {
    const list = document.createElement("ul");
    list.className = "verdicts";
    for (const c of cited) {
      const li = document.createElement("li");
      li.className = "verdict " + c.verdict;
      li.textContent = "回答引用 " + c.text + "：" + (VERDICTS[c.verdict] || c.verdict);
      list.appendChild(li);
    }
    box.appendChild(list);
  }
  div.appendChild(box);
}

// With `lawtune serve --tools builtin`, `lawtune.tools` is the agent loop's trace: {rounds, finish, calls:
// [{round, name, arguments, ok, result}]}. Each call is a <details class="call">: the tool and its arguments,
// then its result (the figure, the formula in words, the articles) or its error. textContent only.
function addToolCalls(div, lawtune) {
  const trace = lawtune && lawtune.tools;
  if (!trace || !(trace.calls || []).length) return;
  const box = document.createElement("details");
  box.className = "tools";
  box.open = true;
  const title = document.createElement("summary");
  title.textContent = "工具调用（" + trace.calls.length + "）" +
    (trace.finish === "max_rounds" ? "：已达轮数上限" : trace.finish === "length" ? "：超出上下文" : "");
  box.appendChild(title);
  for (const call of trace.calls) {
    const item = document.createElement("details");
    item.className = "call " + (call.ok ? "ok" : "failed");
    const head = document.createElement("summary");
    const args = typeof call.arguments === "string" ? call.arguments : JSON.stringify(call.arguments);
    head.textContent = (call.ok ? "✓ " : "✗ ") + call.name + " " + args;
    const body = document.createElement("div");
    body.className = "result";
    const result = call.result || {};
    const lines = [];
    if (!call.ok) lines.push("错误：" + (result.error || "未知错误"));
    if (result.result !== undefined) lines.push("结果：" + JSON.stringify(result.result) + (result.unit || ""));
    if (result.formula) lines.push("计算：" + result.formula);
    if ((result.articles || []).length) lines.push("依据：" + result.articles.join("、"));
    body.textContent = lines.join("\n");
    item.append(head, body);
    box.appendChild(item);
  }
  div.appendChild(box);
}

function render() {
  for (const m of history) {
    const div = addMessage(m.role, m.content);
    if (m.role === "assistant") { addCopyButton(div, m.content); addToolCalls(div, m.lawtune); addReferences(div, m.lawtune); }
  }
}

// GET /readyz answers JSON: {"ready": bool, "reason"?: str, "notice"?: str, "paused"?: bool, ...}
async function checkReady() {
  try {
    const response = await fetch("/readyz", { cache: "no-store" });
    const state = await response.json().catch(() => ({}));
    // 服务降级: paused by an operator or degraded by the circuit breaker → hide the input, show the notice
    const down = state.paused || state.status === "degraded";
    // --degrade-to-kb: questions still get the retrieved articles, so the input stays open under the notice
    const closed = down && !state.kb_fallback;
    $("ask").hidden = Boolean(closed);
    $("ask").style.display = closed ? "none" : "";  // the stylesheet's `form {display: flex}` beats [hidden]
    if (down) {
      $("status").textContent = state.paused ? "已暂停" : "暂不可用";
      showNotice(state.notice || NOTICES[503]);
    } else if (response.ok && state.ready !== false) {
      $("status").textContent = "在线";
      showNotice("");
    } else {
      $("status").textContent = "暂不可用";
      showNotice(state.notice || (state.reason === "the model is still loading" ? "模型正在加载，请稍候…" : NOTICES[503]));
    }
    return response.ok;
  } catch (e) {
    $("status").textContent = "无法连接";
    showNotice("无法连接到服务，请检查网络后重试。");
    return false;
  }
}

async function errorText(response) {
  const body = await response.json().catch(() => null);
  const notice = NOTICES[response.status];
  if (notice) return notice;
  if (body && body.error && body.error.code === "context_length_exceeded") {
    return "对话太长，模型无法继续。请点击“新对话”重新开始。";
  }
  return "请求失败（" + response.status + "）：" + (body && body.error ? body.error.message : "未知错误");
}

async function ask(question) {
  busy = true;
  $("send").disabled = true;
  history.push({ role: "user", content: question });
  addMessage("user", question);
  const div = addMessage("assistant", "");
  div.classList.add("streaming");
  let answer = "";
  let lawtune = null;
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: apiHeaders(),
      // no max_tokens: the server picks its default, cut to what still fits the model's context
      body: JSON.stringify({ messages: history.map((m) => ({ role: m.role, content: m.content })),
                             stream: true, temperature: 0.7 }),
    });
    if (response.status === 401 && askForKey()) { history.pop(); div.remove(); busy = false; return ask(question); }
    if (!response.ok) throw new Error(await errorText(response));
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const line = buffer.slice(0, cut).trim();
        buffer = buffer.slice(cut + 2);
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error("回答中断：" + chunk.error.message);
        if (chunk.lawtune) lawtune = chunk.lawtune;
        for (const choice of chunk.choices || []) {
          if (choice.delta && choice.delta.content) {
            answer += choice.delta.content;
            div.textContent = answer;
            $("log").scrollTop = $("log").scrollHeight;
          }
        }
      }
    }
    history.push(lawtune ? { role: "assistant", content: answer, lawtune } : { role: "assistant", content: answer });
    save();
    addCopyButton(div, answer);
    addToolCalls(div, lawtune);
    addReferences(div, lawtune);
    if (!lawtune || !lawtune.degraded) showNotice("");
  } catch (e) {
    history.pop();  // the question is not part of the conversation unless it was answered
    div.remove();
    const message = e instanceof TypeError ? "无法连接到服务，请稍后再试。" : e.message;
    showNotice(message);
    addMessage("error", message);
    checkReady();
  } finally {
    div.classList.remove("streaming");
    busy = false;
    $("send").disabled = false;
  }
}

$("ask").addEventListener("submit", (event) => {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question || busy) return;
  $("question").value = "";
  ask(question);
});

$("question").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("ask").requestSubmit();
  }
});

$("clear").addEventListener("click", () => {
  history = [];
  save();
  $("log").querySelectorAll(".msg").forEach((node) => node.remove());
  showNotice("");
});

render();
checkReady();
setInterval(checkReady, 2000);  // a pause or resume shows within about 2 s

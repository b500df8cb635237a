// mailgate test driver (TestIntegrationThunderbird). At every start of
// Thunderbird it asks the test's control server for a task, then:
//  1. waits until the message with task.fetchSubject is in the IMAP account's
//     Inbox (Thunderbird fetched it through mailgate; the experiment API in
//     experiment/ makes it get new messages while it waits), reads it in full
//     (messages.getFull: the body comes from the server too) and reports it;
//  2. composes a plain-text message from the account's identity to task.to
//     and sends it now (SMTP through mailgate), and reports the result;
//  3. when task.quit is set, closes every window, so that Thunderbird quits
//     the way it does for a user (SIGTERM skips saving part of the profile,
//     such as the OAuth refresh token).
// Every step, and any error, is POSTed to the control server as JSON.
"use strict";

const POLL_MS = 250;
const REFRESH_MS = 3000;
let control = "";

async function report(step, data = {}) {
  try {
    await fetch(control + "/report", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ step, ...data }),
    });
  } catch (e) {
    console.error("mailgate driver: report " + step + " failed: " + e);
  }
}

function sleep(ms) {
  return new Promise(resolve => setTimeout(resolve, ms));
}

// textBody returns the first text/plain part of a messages.getFull tree.
function textBody(part) {
  if (part.contentType === "text/plain" && typeof part.body === "string") {
    return part.body;
  }
  for (const p of part.parts || []) {
    const b = textBody(p);
    if (b !== null) {
      return b;
    }
  }
  return null;
}

// findInbox returns the account's Inbox, or null: a new profile has none
// until Thunderbird has listed the folders on the server.
async function findInbox(account) {
  const found = await browser.folders.query({ accountId: account.id, specialUse: ["inbox"] });
  return found.length > 0 ? found[0] : null;
}

// waitMessage waits until a message with subject is in the account's Inbox,
// asking Thunderbird to get new messages every REFRESH_MS once it has
// listed the folders. Errors are retried until the deadline: the Inbox's
// folder object can be replaced while Thunderbird lists the folders.
async function waitMessage(account, subject, deadline) {
  let lastError = "the Inbox did not appear";
  let refreshed = 0;
  while (Date.now() < deadline) {
    try {
      const inbox = await findInbox(account);
      if (inbox) {
        const page = await browser.messages.query({ folderId: inbox.id, subject });
        if (page.messages.length > 0) {
          return page.messages[0];
        }
        lastError = "not in the Inbox yet";
        if (Date.now() - refreshed > REFRESH_MS && (await browser.mailgateDriver.getNewMessages(account.id))) {
          refreshed = Date.now();
          await report("progress", { detail: "not in the Inbox yet: Get Messages" });
        }
      }
    } catch (e) {
      lastError = String(e);
    }
    await sleep(POLL_MS);
  }
  throw new Error("no message with subject " + JSON.stringify(subject) + " before the deadline (" + lastError + ")");
}

// quit closes every window; Thunderbird then quits as when the user closes
// its main window, saving the profile (the refresh token) on the way out.
async function quit() {
  for (const w of await browser.windows.getAll()) {
    await browser.windows.remove(w.id);
  }
}

async function run() {
  const cfg = await (await fetch(browser.runtime.getURL("config.json"))).json();
  control = cfg.control;
  const info = await browser.runtime.getBrowserInfo();
  await report("started", { detail: info.name + " " + info.version });
  const task = await (await fetch(control + "/task")).json();
  const deadline = Date.now() + task.timeoutMs;

  const accounts = await browser.accounts.list();
  const account = accounts.find(a => a.type === "imap");
  if (!account) {
    throw new Error("no IMAP account; accounts: " + JSON.stringify(accounts.map(a => a.type)));
  }
  const msg = await waitMessage(account, task.fetchSubject, deadline);
  const full = await browser.messages.getFull(msg.id);
  await report("fetched", { subject: msg.subject, body: textBody(full) || "" });

  const identity = account.identities[0];
  const tab = await browser.compose.beginNew({
    identityId: identity.id,
    to: [task.to],
    subject: task.sendSubject,
    plainTextBody: task.sendBody,
    isPlainText: true,
  });
  const sent = await browser.compose.sendMessage(tab.id, { mode: "sendNow" });
  // sendMessage resolves once the copies (fcc) are saved too.
  const copies = (sent.messages || []).map(m => (m.folder ? m.folder.path : m.folderId) + " " + m.subject);
  await report("sent", { detail: "mode " + sent.mode + ", Message-ID " + (sent.headerMessageId || "?") + ", copies " + JSON.stringify(copies) });
  if (task.quit) {
    await report("quitting");
    await quit();
  }
}

run().catch(e => report("error", { detail: String(e) + (e && e.stack ? "\n" + e.stack : "") }));

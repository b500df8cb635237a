// Test-only Experiment API of the mailgate test driver: Get Messages for an
// account's Inbox. The MailExtension APIs have no way to ask Thunderbird to
// check for new mail, and a new profile can miss a message already in the
// Inbox at its first connection until its next periodic check, a minute on
// (Thunderbird 153 selects the Inbox before it knows the server's hierarchy
// delimiter, then creates the folder again and drops the header it fetched).
"use strict";

var { ExtensionCommon } = ChromeUtils.importESModule("resource://gre/modules/ExtensionCommon.sys.mjs");
var { MailServices } = ChromeUtils.importESModule("resource:///modules/MailServices.sys.mjs");

this.mailgateDriver = class extends ExtensionCommon.ExtensionAPI {
  getAPI() {
    return {
      mailgateDriver: {
        async getNewMessages(accountId) {
          const account = MailServices.accounts.getAccount(accountId);
          if (!account) {
            throw new Error("no account " + accountId);
          }
          const inbox = account.incomingServer.rootFolder.getFolderWithFlags(Ci.nsMsgFolderFlags.Inbox);
          if (!inbox) {
            throw new Error("account " + accountId + " has no Inbox");
          }
          // Until the first connection has listed the folders the delimiter
          // is unknown ("^"); checking then would only race that connection
          // (and its OAuth window).
          if (inbox.QueryInterface(Ci.nsIMsgImapMailFolder).hierarchyDelimiter === "^") {
            return false;
          }
          inbox.getNewMessages(null, null);
          return true;
        },
      },
    };
  }
};

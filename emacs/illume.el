;;; illume.el --- Talk to a language model from the buffer -*- lexical-binding: t; -*-

;; Author: illume contributors
;; Maintainer: illume contributors
;; Version: 0.1.0
;; Package-Requires: ((emacs "27.1"))
;; Keywords: tools, convenience
;; SPDX-License-Identifier: Unlicense

;; This is free and unencumbered software released into the public domain.

;;; Commentary:

;; Runs the `illume' program on the buffer and streams its reply into the
;; buffer while you keep editing.  The buffer is the whole conversation:
;; `!user' and `!assistant' lines separate the messages, `!api URL',
;; `!:KEY JSON' and `!profile NAME' lines say how to reach the model (see
;; the illume README for the buffer language).
;;
;; Commands (also on `illume-keymap-prefix' in `illume-mode'):
;;
;;   M-x illume          send the buffer, stream the reply at its end   (a)
;;   M-x illume-infill   fill in the middle at point's line             (f)
;;   M-x illume-stop     stop the reply; what arrived stays             (s)
;;   M-x illume-user     start a new `!user' message at the end         (u)
;;   M-x illume-rewrite  rewrite the region's lines, hunks to take      (r)
;;   M-x illume-rewrite-take / -drop  take or drop every hunk left   (t, d)
;;   M-x illume-review   list grounded suggestions, each applicable     (v)
;;
;; One reply runs per buffer; a second request stops the first.  The whole
;; reply is one undo step.  Failures land in the buffer as the `!error'
;; section illume prints: no text is ever lost.  A reply in progress shows
;; `illume-mode-line-indicator' in the mode line; `illume-done-functions'
;; run when it ends.
;;
;; A reply never acts as a directive on the next turn, in Emacs too: illume
;; prints no NUL or ESC (ESC sequences would have Emacs decode the saved
;; file as ISO-2022) and breaks the `Local Variables:' and `-*-' marks of a
;; reply, so that no `coding:' in it decodes the file as UTF-7 (where
;; `+ACE-api' reads `!api').  For a file that came from elsewhere, the
;; commands refuse a buffer decoded with a coding system that is not ASCII
;; compatible (see `illume--check-coding').
;;
;; Setup, with illume on `exec-path' (or see `illume-command'):
;;
;;   (add-to-list 'load-path "/path/to/illume/emacs")
;;   (require 'illume)
;;   (add-hook 'text-mode-hook #'illume-mode)   ; C-c ~ a, C-c ~ f, ...

;;; Code:

(require 'cl-lib)

(defgroup illume nil
  "Talk to a language model from the buffer, with the illume program."
  :group 'tools
  :prefix "illume-")

(defcustom illume-command '("illume")
  "The program to run and its first arguments, a list of strings.
It runs without a shell, in the buffer's `default-directory': the
buffer goes to its standard input, its standard output is the
reply.  A first item starting with `~' is expanded.  To use a
virtual environment, for example:

  (setq illume-command \\='(\"~/illume/.venv/bin/illume\"))"
  :type '(repeat string))

(defcustom illume-profile nil
  "The profile loaded when the buffer loads none, or nil for illume's own.
Passed as `--profile NAME'; illume's own default is $ILLUME_PROFILE,
else `llama.cpp'."
  :type '(choice (const :tag "illume's default" nil) string))

(defcustom illume-args nil
  "More arguments for illume, a list of strings, after all others."
  :type '(repeat string))

(defcustom illume-stop-rules "all"
  "The stopping rules `illume-infill' asks for, or nil (or \"\") for none.
They end the middle as soon as it leaves its hole, so that no
text past the hole has to be deleted by hand: a comma-separated
list of `echo', `scope' and `syntax', or `all'.  Passed as
`--stop-rules'; a `!stop-rules' line in the buffer wins.  Plain
`illume' replies are not affected."
  :type '(choice (const :tag "All rules" "all")
                 (const :tag "None" nil)
                 (string :tag "Rules")))

(defcustom illume-follow t
  "Non-nil: a window whose point is at the end of the buffer follows the reply.
Its point stays at the end as the reply streams in, so the
reply's last line stays in view.  With nil, point stays where it
was in the text."
  :type 'boolean)

(defcustom illume-mode-line-indicator " illume…"
  "What the mode line shows while a reply streams into the buffer."
  :type 'string)

(defcustom illume-done-functions nil
  "Functions run when a reply ends, in the buffer it streamed into.
Each is called with two arguments: RESULT, one of the symbols
`ok', `error' (illume printed an `!error' section or failed) and
`stopped' (`illume-stop', a second request, or the buffer was
killed), and EXIT-STATUS, illume's exit status (-1 when unknown)."
  :type 'hook)

(defvar illume-command-map
  (let ((map (make-sparse-keymap)))
    (define-key map "a" #'illume)
    (define-key map "f" #'illume-infill)
    (define-key map "s" #'illume-stop)
    (define-key map "u" #'illume-user)
    (define-key map "m" #'illume-summarize)
    (define-key map "r" #'illume-rewrite)
    (define-key map "t" #'illume-rewrite-take)
    (define-key map "d" #'illume-rewrite-drop)
    (define-key map "v" #'illume-review)
    map)
  "Keymap of the illume commands, on `illume-keymap-prefix' in `illume-mode'.")
(fset 'illume-command-map illume-command-map)

(defvar illume-mode-map (make-sparse-keymap)
  "Keymap of `illume-mode': `illume-command-map' on `illume-keymap-prefix'.")

(defun illume--set-prefix (symbol prefix)
  "Set SYMBOL to PREFIX and bind `illume-command-map' to it in `illume-mode-map'."
  (when (and (boundp symbol) (symbol-value symbol))
    (define-key illume-mode-map (kbd (symbol-value symbol)) nil))
  (set-default symbol prefix)
  (when prefix
    (define-key illume-mode-map (kbd prefix) 'illume-command-map)))

(defcustom illume-keymap-prefix "C-c ~"
  "The key `illume-mode' puts `illume-command-map' on, as for `kbd', or nil.
`C-c' followed by a punctuation character is left to minor modes
by the Emacs key binding conventions."
  :type '(choice (const :tag "None" nil) string)
  :set #'illume--set-prefix)

;;; The reply

(cl-defstruct (illume--reply (:constructor illume--reply-create)
                             (:copier nil))
  "A reply streaming into a buffer."
  buffer               ; the buffer it streams into
  process              ; the illume process
  stderr               ; the pipe process reading illume's standard error
  marker               ; where the next text goes
  mode                 ; `chat', `infill', `rewrite' (text alone) or `review' (kept in OUT)
  (out "")             ; the output of a review
  on-done              ; nil, or a function of the reply and the exit status, called when it ends
  (head "")            ; text to insert before the first output
  replace              ; non-nil: the first output replaces the hole's line
  (newlines 0)         ; line breaks inserted so far
  (tail "")            ; the last bytes seen, to spot "\n!error\n" across chunks
  failed               ; non-nil once illume printed an !error section
  stopped              ; non-nil once asked to stop
  (err "")             ; the end of what illume wrote on standard error
  undo                 ; `buffer-undo-list' right after the reply's last change
  kill-timer           ; kills the process when SIGTERM was not enough
  placed               ; nil, or the file where illume puts summaries to insert (`illume--place')
  broken               ; non-nil once the buffer refused a change
  done)                ; non-nil once the reply ended

(defvar-local illume--current nil
  "The `illume--reply' streaming into this buffer, or nil.")

(defconst illume--stop-wait 3.0
  "Seconds a second request waits for the first reply's last words.")

(defconst illume--kill-after 2.0
  "Seconds after SIGTERM when a process that lingers is killed.")

(defun illume-running-p (&optional buffer)
  "Return non-nil while a reply streams into BUFFER (default: the current one)."
  (buffer-local-value 'illume--current (or buffer (current-buffer))))

;;; Commands

;;;###autoload
(defun illume ()
  "Send the buffer to illume and stream the reply at its end.
The whole buffer is sent, also when it is narrowed.  The reply
lands as illume prints it: a chat reply starts with an
`!assistant' line.  When the buffer ends with a newline the reply
goes right before it, as if appended to the buffer's last line.
You can keep editing while it streams; text above the reply is
never changed, but for the summaries that `!fit summarize' writes
when a turn would not fit: each `!summary' block goes in before the
role line of the first message kept, as the reply starts, in the
reply's undo step.  A reply already running in the buffer is stopped
first.  The whole reply is one undo step, unless you change the
buffer while it streams: then the rest of it is a step of its own.
A buffer whose file was decoded with a coding system in which its
bytes read as directives they do not hold (UTF-7, UTF-16, ISO-2022,
EBCDIC...; a `coding:' cookie may have asked for it) is not sent:
revisit the file as UTF-8 first, as illume reads it."
  (interactive)
  (illume--chat nil))

;;;###autoload
(defun illume-summarize ()
  "Have the model summarise the buffer since its last `!summary'.
The `!summary' block streams at the end of the buffer, where a
reply would go (see `illume'), as `illume --summarize' prints it;
the instruction is the buffer's or profile's `!summarize' line
\(`!summarize story').  In the requests that follow, the summary
stands in for the text it covers, which stays in the buffer."
  (interactive)
  (illume--chat '("--summarize")))

(defun illume--chat (extra)
  "Send the buffer to illume with options EXTRA; stream its output at the end."
  (illume--check-buffer)
  (illume--check-coding)
  (illume--stop-and-wait (current-buffer))
  (let* ((text (illume--buffer-text))
         (end (- (1+ (buffer-size)) (if (string-suffix-p "\n" text) 1 0)))
         ;; `!fit summarize' (the buffer's or a profile's) may put summaries above the reply.
         (placed (make-temp-file "illume-placed-")))
    (condition-case err
        (illume--start 'chat text end "" nil
                       (illume--argv nil (append extra (list "--summaries-file" placed))))
      (error (delete-file placed)
             (signal (car err) (cdr err))))
    (setf (illume--reply-placed illume--current) placed)))

;;;###autoload
(defun illume-infill ()
  "Fill in the middle at point's line, streaming it in place.
The buffer is sent with a bare `!infill' line at point's line:
the text above is the prefix, the text below the suffix.  When
the line is blank (empty or only white space) it is the hole and
the middle replaces it; otherwise the middle goes on new lines
right below it.  The `!infill' line is only sent, never put in
the buffer.  The stopping rules of `illume-stop-rules' are on and
the buffer's major mode (or, in `fundamental-mode' and `text-mode',
its file name) tells illume the language (`--file-name').  Like
`illume', it does not send a buffer decoded into directives that
its file does not hold."
  (interactive)
  (illume--check-buffer)
  (illume--check-coding)
  (illume--stop-and-wait (current-buffer))
  (let* ((bol (line-beginning-position))
         (eol (line-end-position))
         (blank (save-excursion (goto-char bol) (looking-at-p "[ \t]*$")))
         (text (save-restriction
                 (widen)
                 (if blank
                     (concat (buffer-substring-no-properties (point-min) bol) "!infill"
                             (buffer-substring-no-properties eol (point-max)))
                   (concat (buffer-substring-no-properties (point-min) eol) "\n!infill"
                           (buffer-substring-no-properties eol (point-max)))))))
    (illume--start 'infill text (if blank bol eol) (if blank "" "\n") blank (illume--argv t))))

;;;###autoload
(defun illume-stop ()
  "Stop the reply streaming into this buffer.
What already arrived stays, followed by the `!note interrupted'
line illume prints when it stops."
  (interactive)
  (let ((reply illume--current))
    (if (not reply)
        (message "No illume reply is running in this buffer")
      (illume--stop reply))))

;;;###autoload
(defun illume-user ()
  "Start a new `!user' message at the end of the buffer and move point there.
It follows an empty line unless the buffer's last line is blank.
While a reply streams, the message goes below it and the reply
keeps streaming above it."
  (interactive)
  (illume--check-buffer)
  (save-restriction
    (widen)
    (let* ((text (illume--buffer-text))
           (newline-at-end (string-suffix-p "\n" text))
           ;; The last line, as if the buffer ended with a newline.
           (last (car (last (split-string (if newline-at-end (substring text 0 -1) text) "\n")))))
      (goto-char (point-max))
      (cond ((string= text "") (insert "!user\n\n"))
            ((and (not illume--current) (string-match-p "\\`[ \t]*\\'" last))
             (insert (if newline-at-end "" "\n") "!user\n\n"))
            (t (insert (if newline-at-end "" "\n") "\n!user\n\n")))
      (forward-char -1))))

;;;###autoload
(define-minor-mode illume-mode
  "Keys for illume's commands, on `illume-keymap-prefix'.

\\{illume-mode-map}"
  :lighter " Illume"
  :keymap illume-mode-map
  :group 'illume)

;;; Starting and stopping

(defun illume--check-buffer ()
  "Signal an error unless the current buffer can take a reply."
  (barf-if-buffer-read-only))

(defun illume--check-coding ()
  "Signal an error if the file was decoded into directives its bytes do not hold.
The illume program reads a file as UTF-8.  A coding system that is not ASCII
compatible turns bytes that are no directive into one: in UTF-7
`+ACE-api' reads `!api', in ISO-2022 an escape sequence vanishes
from `!ESC(Bapi', UTF-16 and EBCDIC map every byte anew.  Emacs
picks such a coding system from the file itself: a `coding:' in
its first line or in a local variables block at its end, a byte
order mark, an escape sequence.  UTF-8 with a byte order mark is
UTF-8 all the same (illume prints no reply that begins with one)."
  (when buffer-file-name
    (let ((coding (coding-system-base buffer-file-coding-system)))
      (unless (or (coding-system-get coding :ascii-compatible-p)
                  (eq coding 'utf-8-with-signature))
        (user-error "Not sent: %s was decoded as %s, in which its bytes can read as directives \
they do not hold; revisit it as UTF-8 first (C-x RET r utf-8 RET)"
                    (file-name-nondirectory buffer-file-name) coding)))))

(defun illume--buffer-text ()
  "Return the whole buffer's text, narrowed or not, without properties."
  (save-restriction
    (widen)
    (buffer-substring-no-properties (point-min) (point-max))))

(defun illume--argv (infill &optional extra tail)
  "Return the command line to run, with the infill options when INFILL is non-nil.
EXTRA goes after the profile, TAIL after `illume-args', last."
  (let ((argv (copy-sequence illume-command))
        (hint (and infill (illume--language-hint))))
    (unless argv
      (user-error "Set `illume-command' to the illume program to run"))
    (when (string-prefix-p "~" (car argv))
      (setcar argv (expand-file-name (car argv))))
    (append argv
            (and illume-profile (not (string= illume-profile ""))
                 (list "--profile" illume-profile))
            extra
            (and infill illume-stop-rules (not (string= illume-stop-rules ""))
                 (list "--stop-rules" illume-stop-rules))
            (and hint (list "--file-name" hint))
            illume-args
            tail)))

(defun illume--language-hint ()
  "Return the buffer's language hint: its major mode, else its file name.
The major mode holds the user's own choice (a scratch buffer in
`python-mode'); `fundamental-mode' and `text-mode' say nothing."
  (if (memq major-mode '(fundamental-mode text-mode))
      buffer-file-name
    (symbol-name major-mode)))

(defun illume--start (mode text position head replace argv &optional on-done)
  "Run ARGV on TEXT and stream its output to POSITION in the current buffer.
MODE is `chat', `infill', `rewrite' or `review' (whose output is
kept, not inserted); HEAD goes before the first output; REPLACE
non-nil makes the first output replace the rest of the line at
POSITION.  ON-DONE, when non-nil, is called with the reply and
its exit status when it ends, however it ends."
  (let* ((buffer (current-buffer))
         (reply (illume--reply-create :buffer buffer :mode mode :head head :replace replace
                                      :marker (copy-marker position) :on-done on-done))
         (program (car argv)))
    (unless (if (file-name-absolute-p program) (file-executable-p program) (executable-find program))
      (user-error "Cannot run %s: no such program (see `illume-command')" program))
    (condition-case err
        (let* ((stderr (make-pipe-process
                        :name "illume stderr" :buffer nil :noquery t
                        :coding 'utf-8-unix
                        :filter (lambda (_process text) (illume--on-err reply text))
                        :sentinel (lambda (_process _event) (illume--maybe-finish reply))))
               (process (progn
                          (setf (illume--reply-stderr reply) stderr)
                          (make-process
                           :name "illume" :buffer nil :command argv :noquery t
                           :connection-type 'pipe :coding 'utf-8-unix :stderr stderr
                           :filter (lambda (_process text) (illume--on-out reply text))
                           :sentinel (lambda (_process _event) (illume--maybe-finish reply))))))
          (setf (illume--reply-process reply) process))
      (error
       (when (illume--reply-stderr reply)
         (delete-process (illume--reply-stderr reply)))
       (user-error "Cannot run %s: %s" program (error-message-string err))))
    (setq illume--current reply)
    (add-hook 'kill-buffer-hook #'illume--killed nil t)
    (illume--show-running)
    (let ((process (illume--reply-process reply)))
      (condition-case nil
          (progn (process-send-string process text)
                 (process-send-eof process))
        ;; It ended before reading it all: its output says why.
        (error nil)))))

(defun illume--stop (reply)
  "Ask REPLY's process to end (SIGTERM), and kill it if it lingers."
  (setf (illume--reply-stopped reply) t)
  (let ((process (illume--reply-process reply)))
    (when (process-live-p process)
      (signal-process process 'TERM)
      (unless (illume--reply-kill-timer reply)
        (setf (illume--reply-kill-timer reply)
              (run-at-time illume--kill-after nil
                           (lambda ()
                             (when (process-live-p process)
                               (kill-process process)))))))))

(defun illume--stop-and-wait (buffer)
  "Stop the reply streaming into BUFFER and wait a moment for its last words."
  (let ((reply (buffer-local-value 'illume--current buffer)))
    (when reply
      (illume--stop reply)
      (let ((deadline (+ (float-time) illume--stop-wait)))
        (while (and (not (illume--reply-done reply)) (< (float-time) deadline))
          (accept-process-output nil 0.01)))
      (unless (illume--reply-done reply)
        (illume--finish reply -1)))))

(defun illume--killed ()
  "Stop the reply of the buffer being killed."
  (when illume--current
    (let ((reply illume--current))
      (illume--stop reply)
      (illume--finish reply -1))))

;;; Output

(defun illume--on-out (reply text)
  "Insert TEXT, output of REPLY's process, at the reply's place."
  (when (illume--reply-placed reply)
    (illume--place reply))
  (unless (illume--reply-done reply)
    (let ((seen (concat (illume--reply-tail reply) text)))
      ;; A rewrite's output is text alone: its failure is its exit status.
      (when (and (memq (illume--reply-mode reply) '(chat infill)) (string-match-p "\n!error\n" seen))
        (setf (illume--reply-failed reply) t))
      (setf (illume--reply-tail reply) (substring seen (max 0 (- (length seen) 8)))))
    (if (eq (illume--reply-mode reply) 'review)
        (setf (illume--reply-out reply) (concat (illume--reply-out reply) text))
      (let ((text (concat (illume--reply-head reply) text)))
        (setf (illume--reply-head reply) "")
        (illume--change reply (lambda () (illume--insert reply text)))))))

(defun illume--on-err (reply text)
  "Keep the end of TEXT, standard error of REPLY's process."
  (let ((err (concat (illume--reply-err reply) text)))
    (setf (illume--reply-err reply) (substring err (max 0 (- (length err) 4000))))))

(defun illume--maybe-finish (reply)
  "Finish REPLY once its process has exited and its standard error is read."
  (let ((process (illume--reply-process reply))
        (stderr (illume--reply-stderr reply)))
    (when (and process (memq (process-status process) '(exit signal)))
      (if (process-live-p stderr)
          ;; A program it started may hold standard error open: wait a little only.
          (run-at-time 1 nil (lambda () (when (process-live-p stderr) (delete-process stderr))))
        (illume--finish reply (if (eq (process-status process) 'signal)
                                  (+ 128 (process-exit-status process))
                                (process-exit-status process)))))))

(defun illume--finish (reply status)
  "End REPLY, whose process exited with STATUS (-1 when unknown)."
  (when (illume--reply-placed reply)
    (illume--place reply))
  (unless (illume--reply-done reply)
    (let ((buffer (illume--reply-buffer reply))
          (stopped (illume--reply-stopped reply)))
      (when (buffer-live-p buffer)
        (with-current-buffer buffer
          (when (and (/= status 0) (/= status -1) (not stopped) (not (illume--reply-failed reply))
                     (memq (illume--reply-mode reply) '(chat infill)))
            ;; illume failed without saying so (it crashed, or it is not illume).
            (let ((why (and (string-match "\\([^\n]*[^\n \t]\\)[\n \t]*\\'" (illume--reply-err reply))
                            (match-string 1 (illume--reply-err reply)))))
              (illume--on-out reply (format "\n\n!error\n\nillume exited with status %d%s\n"
                                            status (if why (concat ": " why) "")))
              (setf (illume--reply-failed reply) t)))
          (when (and (eq (illume--reply-mode reply) 'infill) (> (illume--reply-newlines reply) 0))
            ;; The line after the hole already starts the suffix.
            (illume--change reply (lambda () (illume--drop-empty-last reply))))))
      (setf (illume--reply-done reply) t)
      (when (illume--reply-kill-timer reply)
        (cancel-timer (illume--reply-kill-timer reply)))
      (when (process-live-p (illume--reply-process reply))
        (delete-process (illume--reply-process reply)))
      (when (process-live-p (illume--reply-stderr reply))
        (delete-process (illume--reply-stderr reply)))
      (when (buffer-live-p buffer)
        (with-current-buffer buffer
          (when (eq illume--current reply)
            (setq illume--current nil)
            (remove-hook 'kill-buffer-hook #'illume--killed t))
          (set-marker (illume--reply-marker reply) nil)
          (force-mode-line-update)
          (when (illume--reply-on-done reply)
            (funcall (illume--reply-on-done reply) reply status))
          (run-hook-with-args 'illume-done-functions
                              (cond (stopped 'stopped)
                                    ((or (illume--reply-failed reply) (/= status 0)) 'error)
                                    (t 'ok))
                              status))))))

(defun illume--place (reply)
  "Put the `!summary' blocks illume wrote for REPLY above the lines they go before.
`!fit summarize' writes them to the reply's file (`--summaries-file')
before the reply begins: a first line with those lines, each
counted with the blocks before it in, then the blocks, each from
its `!summary' line (the model's lines are escaped: none begins
so).  Once, at the reply's first output or its end; the file goes."
  (let* ((file (illume--reply-placed reply))
         (text (with-temp-buffer
                 (let ((coding-system-for-read 'utf-8-unix))
                   (ignore-errors (insert-file-contents file)))
                 (buffer-string)))
         (lines (butlast (split-string text "\n")))
         (at (mapcar #'string-to-number (split-string (or (car lines) ""))))
         (blocks nil))
    (setf (illume--reply-placed reply) nil)
    (ignore-errors (delete-file file))
    (dolist (line (cdr lines))
      (when (string-match-p "\\`!summary\\(?:[ \t]\\|\\'\\)" line)
        (push "" blocks))
      (when blocks
        (setcar blocks (concat (car blocks) line "\n"))))
    (setq blocks (nreverse blocks))
    (when (and at (= (length at) (length blocks)) (buffer-live-p (illume--reply-buffer reply)))
      (illume--change reply (lambda () (illume--insert-blocks at blocks))))))

(defun illume--insert-blocks (at blocks)
  "Insert each of BLOCKS before the line of AT at its place, in order."
  (catch 'moved
    (while at
      (goto-char (point-min))
      (when (or (/= (forward-line (1- (car at))) 0)
                (not (looking-at-p "!\\(?:user\\|assistant\\|summary\\)\\(?:[ \t]\\|$\\)")))
        (message "illume: the buffer changed where a summary goes (line %d): not placed; the next turn writes it again"
                 (car at))
        (throw 'moved nil))
      (insert (car blocks))
      (setq at (cdr at) blocks (cdr blocks)))))

;;; Changing the buffer

(defun illume--insert (reply text)
  "Insert TEXT at REPLY's marker and move the marker past it."
  (let ((marker (illume--reply-marker reply)))
    (goto-char marker)
    (when (illume--reply-replace reply)
      (delete-region (point) (line-end-position))
      (setf (illume--reply-replace reply) nil))
    (insert text)
    (setf (illume--reply-newlines reply) (+ (illume--reply-newlines reply) (cl-count ?\n text)))
    (set-marker marker (point))))

(defun illume--drop-empty-last (reply)
  "Delete REPLY's last line break when the hole's line after it is empty."
  (let ((marker (illume--reply-marker reply)))
    (goto-char marker)
    (when (and (eq (char-before) ?\n) (eolp))
      (delete-char -1))))

(defun illume--change (reply change)
  "Call CHANGE to change REPLY's buffer, as part of the reply's undo step.
The change joins the reply's previous one when nothing else
changed the buffer in between (undo boundaries made meanwhile
are dropped); otherwise it starts a step of its own.  Windows
whose point is at the end of the buffer keep it there when
`illume-follow' is non-nil."
  (let ((buffer (illume--reply-buffer reply)))
    (unless (illume--reply-broken reply)
      (with-current-buffer buffer
        (let* ((end (point-max))
               (followers (and illume-follow
                               (cl-remove-if-not (lambda (window) (= (window-point window) end))
                                                 (get-buffer-window-list buffer nil t))))
               (point-at-end (and illume-follow (= (point) end))))
          (illume--join-undo reply)
          (condition-case err
              (save-excursion
                (save-restriction
                  (widen)
                  (funcall change)))
            (error
             ;; Read-only now, say: stop, and change nothing more.
             (setf (illume--reply-broken reply) t)
             (illume--stop reply)
             (illume--finish reply -1)
             (message "Illume reply stopped, cannot change the buffer: %s" (error-message-string err))))
          (setf (illume--reply-undo reply) buffer-undo-list)
          (when point-at-end
            (goto-char (point-max)))
          (dolist (window followers)
            (set-window-point window (point-max))))))))

(defun illume--join-undo (reply)
  "Make the next change join REPLY's undo step, or start a new step.
It joins when `buffer-undo-list' holds nothing but boundaries
above the reply's last change."
  (unless (eq buffer-undo-list t)
    (let ((mine (illume--reply-undo reply))
          (list buffer-undo-list))
      (while (and list (null (car list)) (not (eq list mine)))
        (setq list (cdr list)))
      (if (and mine (eq list mine))
          (setq buffer-undo-list mine)
        (undo-boundary)))))

;;; Rewrite

(defcustom illume-rewrite-profile nil
  "The job profile `illume-rewrite' adds, or nil for illume's own (`rewrite').
For example \"proofread\", \"translate\" or a profile of your own
that holds your house style.  Passed as a second `--profile'."
  :type '(choice (const :tag "illume's rewrite" nil) string))

(defvar-local illume--rewrite nil
  "In a buffer being rewritten: the plist of the rewrite shown in it.
:start and :end are markers around the changed part, :hunks a list
of (START END BLOCK OLD NEW), :undo `buffer-undo-list' right after
the blocks went in.")

(defconst illume--rewrite-markers '("<<<<<<< old\n" "=======\n" ">>>>>>> illume\n")
  "The lines around a hunk's old and new text, as `smerge-mode' reads them.
Read as text only: each hunk's exact block is kept, so that a line
of the text that looks like one of them never misleads
`illume-rewrite-take' or `illume-rewrite-drop'.")

;;;###autoload
(defun illume-rewrite (start end instruction)
  "Rewrite the lines from START to END by INSTRUCTION, to take or drop.
Interactively, the lines of the region, or with no active region
the whole buffer.  The lines go to `illume
--rewrite --stream' (with `illume-profile', `illume-rewrite-profile'
and `illume-args'); the new text streams into a buffer of its own
beside.  When it is done, each changed hunk stands in the buffer as
a conflict, old above, new below, in `smerge-mode':
\\<smerge-mode-map>\\[smerge-keep-lower] keeps the new text of the hunk at point,
\\[smerge-keep-upper] the old, \\[smerge-next] goes to the next.
`illume-rewrite-take' takes every hunk left, `illume-rewrite-drop'
drops them: either is one undo step with the hunks' going in, so
that \\[undo] after `illume-rewrite-take' brings the old text back.  The buffer
does not change before the rewrite is done: on any failure (the
server down, an error, \\[illume-stop] in the new text's buffer)
your text stays as it was and the echo area says why.  The new
text is only ever inserted, never run."
  (interactive
   (let ((region (if (use-region-p) (list (region-beginning) (region-end)) (list (point-min) (point-max)))))
     (append region (list (read-string "Rewrite instruction (RET for none): ")))))
  (illume--check-buffer)
  (when illume--rewrite
    (user-error "A rewrite waits in this buffer: M-x illume-rewrite-take or illume-rewrite-drop first"))
  (let* ((source (current-buffer))
         (start (save-excursion (goto-char start) (line-beginning-position)))
         (end (save-excursion (goto-char end)
                              (if (and (bolp) (> end start)) (point) (min (point-max) (1+ (line-end-position))))))
         (rewrite (list :source source :start (copy-marker start) :end (copy-marker end t)
                        :old (buffer-substring-no-properties start end)))
         (argv (illume--argv nil (append '("--rewrite" "--stream") (illume--job-profile illume-rewrite-profile))
                             (if (string= instruction "") '("--") (list "--" instruction))))
         (output (generate-new-buffer (format "*illume-rewrite: %s*" (buffer-name)))))
    (with-current-buffer output
      (setq buffer-undo-list t)
      (setq-local illume--rewrite rewrite)
      (condition-case err
          (illume--start 'rewrite (plist-get rewrite :old) (point-min) "" nil argv #'illume--rewrite-done)
        (error (kill-buffer output)
               (signal (car err) (cdr err)))))
    (display-buffer output)
    (message "illume: rewriting (C-c ~ s in %s stops)" (buffer-name output))))

(defun illume--job-profile (name)
  "Return the arguments that add the job profile NAME, if it is not nil or empty."
  (and name (not (string= name "")) (list "--profile" name)))

(defun illume--last-words (reply status)
  "Return why REPLY failed: the last line illume wrote on standard error.
STATUS is its exit status, said when it wrote nothing."
  (let ((err (illume--reply-err reply)))
    (if (string-match "\\(?:illume: \\)?\\([^\n]*[^\n \t]\\)[\n \t]*\\'" err)
        (match-string 1 err)
      (format "illume exited with status %d" status))))

(defun illume--rewrite-done (reply status)
  "Show the rewrite whose REPLY ended with STATUS in its buffer, or say why not.
Runs in the buffer the new text streamed into, which goes."
  (let* ((output (current-buffer))
         (rewrite illume--rewrite)
         (source (plist-get rewrite :source))
         (new (buffer-substring-no-properties (point-min) (point-max))))
    (quit-windows-on output t)
    (cond ((illume--reply-stopped reply)
           (message "illume: the rewrite was stopped; your text is as it was"))
          ((/= status 0)
           (message "illume: the rewrite failed, your text is as it was: %s" (illume--last-words reply status)))
          ((not (buffer-live-p source))
           (message "illume: the rewrite is done, but its buffer is gone"))
          (t (with-current-buffer source
               (illume--rewrite-show (plist-get rewrite :start) (plist-get rewrite :end)
                                     (plist-get rewrite :old) new))))))

(defun illume--rewrite-show (start end old new)
  "Put the hunks that turn OLD, the text from START to END, into NEW there."
  (cond
   ((not (equal (buffer-substring-no-properties start end) old))
    (message "illume: the lines changed while the rewrite ran; it was not put in"))
   ((equal old new)
    (message "illume: the rewrite changes nothing"))
   (t
    (let ((hunks (illume--diff old new))
          (inhibit-read-only nil)
          records)
      (undo-boundary)
      (save-excursion
        ;; From the last hunk up, so that the line numbers above stay right.
        (dolist (hunk (reverse hunks))
          (pcase-let* ((`(,old-from ,old-to ,new-from ,new-to) hunk)
                       (old-text (illume--lines old old-from old-to))
                       (new-text (illume--lines new new-from new-to))
                       (block (concat (nth 0 illume--rewrite-markers) (illume--ended old-text)
                                      (nth 1 illume--rewrite-markers) (illume--ended new-text)
                                      (nth 2 illume--rewrite-markers))))
            (goto-char start)
            (forward-line old-from)
            (let ((from (point)))
              (delete-region from (progn (forward-line (- old-to old-from)) (point)))
              (insert block)
              (push (list (copy-marker from) (copy-marker (point)) block old-text new-text) records)))))
      (setq illume--rewrite (list :start start :end end :hunks records :undo buffer-undo-list))
      (require 'smerge-mode)
      (smerge-mode 1)
      (goto-char (car (car records)))
      (message "illume: %d hunk%s: C-c ^ l keeps the new text, C-c ^ u the old; \
M-x illume-rewrite-take or illume-rewrite-drop for all" (length records) (if (cdr records) "s" ""))))))

(defun illume--ended (text)
  "Return TEXT ending with a line break (a last line without one gets one)."
  (if (or (string= text "") (string-suffix-p "\n" text)) text (concat text "\n")))

(defun illume--lines (text from to)
  "Return lines FROM (0-based) up to TO of TEXT, line breaks included."
  (with-temp-buffer
    (insert text)
    (goto-char (point-min))
    (forward-line from)
    (buffer-substring-no-properties (point) (progn (forward-line (- to from)) (point)))))

(defun illume--diff (old new)
  "Return the hunks that turn OLD into NEW, a list of line ranges.
Each is (OLD-FROM OLD-TO NEW-FROM NEW-TO), 0-based, ends excluded.
The `diff' program finds them (`diff-command'); without it, the
whole text is one hunk."
  (let ((old-file (make-temp-file "illume-old"))
        (new-file (make-temp-file "illume-new"))
        (coding-system-for-write 'utf-8-unix)
        (coding-system-for-read 'utf-8-unix)
        hunks)
    (unwind-protect
        (progn
          (write-region (illume--ended old) nil old-file nil 'silent)
          (write-region (illume--ended new) nil new-file nil 'silent)
          (with-temp-buffer
            (if (not (memq (ignore-errors (call-process (if (boundp 'diff-command) diff-command "diff")
                                                        nil t nil old-file new-file))
                           '(0 1)))
                (setq hunks nil)
              (goto-char (point-min))
              (while (re-search-forward "^\\([0-9]+\\)\\(?:,\\([0-9]+\\)\\)?\\([acd]\\)\\([0-9]+\\)\\(?:,\\([0-9]+\\)\\)?$"
                                        nil t)
                (let* ((a1 (string-to-number (match-string 1)))
                       (a2 (if (match-string 2) (string-to-number (match-string 2)) a1))
                       (b1 (string-to-number (match-string 4)))
                       (b2 (if (match-string 5) (string-to-number (match-string 5)) b1))
                       (kind (match-string 3)))
                  ;; `a' adds after line A1, `d' deletes after line B1 of NEW: empty ranges there.
                  (push (cond ((equal kind "a") (list a1 a1 (1- b1) b2))
                              ((equal kind "d") (list (1- a1) a2 b1 b1))
                              (t (list (1- a1) a2 (1- b1) b2)))
                        hunks)))
              (setq hunks (or (nreverse hunks) 'none)))))
      (delete-file old-file)
      (delete-file new-file))
    (cond ((eq hunks 'none) nil)
          (hunks hunks)
          (t (list (list 0 (illume--count-lines old) 0 (illume--count-lines new)))))))

(defun illume--count-lines (text)
  "Return the number of lines in TEXT, a last line without a line break counted."
  (+ (cl-count ?\n text) (if (or (string= text "") (string-suffix-p "\n" text)) 0 1)))

(defun illume-rewrite-take ()
  "Take the new text of every hunk of the rewrite still undecided.
It is one undo step with the hunks' going in, when nothing else
changed the buffer meanwhile: \\[undo] brings the old text back."
  (interactive)
  (illume--rewrite-resolve 4))

(defun illume-rewrite-drop ()
  "Keep the old text of every hunk of the rewrite still undecided.
What you took with `smerge-mode' stays."
  (interactive)
  (illume--rewrite-resolve 3))

(defun illume--rewrite-resolve (which)
  "Put text WHICH of each undecided hunk in its place; end the rewrite.
WHICH is 3 for the old text, 4 for the new."
  (unless illume--rewrite
    (user-error "No rewrite waits in this buffer"))
  (let ((hunks (plist-get illume--rewrite :hunks))
        (mine (plist-get illume--rewrite :undo)))
    (unless (eq buffer-undo-list t)
      ;; Join the step of the hunks' going in when only boundaries came since.
      (let ((list buffer-undo-list))
        (while (and list (null (car list)) (not (eq list mine)))
          (setq list (cdr list)))
        (when (eq list mine)
          (setq buffer-undo-list mine))))
    (save-excursion
      (dolist (hunk hunks)
        (pcase-let ((`(,from ,to ,block . ,_) hunk))
          ;; A hunk decided already (smerge) or edited is left as it is.
          (when (equal (buffer-substring-no-properties from to) block)
            (goto-char from)
            (delete-region from to)
            (insert (nth which hunk))))
        (set-marker (nth 0 hunk) nil)
        (set-marker (nth 1 hunk) nil)))
    (setq illume--rewrite nil)
    (when (bound-and-true-p smerge-mode)
      (save-excursion
        (goto-char (point-min))
        (unless (re-search-forward "^<<<<<<< " nil t)
          (smerge-mode -1))))))

;;; Review

(defcustom illume-review-profile nil
  "The job profile `illume-review' adds, or nil to choose by the major mode.
nil: `review-code' in a mode derived from `prog-mode', else
`review' (prose: grammar, passive voice, clarity)."
  :type '(choice (const :tag "By the major mode" nil) string))

(defconst illume--json-string "\"\\(?:[^\"\\\\]\\|\\\\.\\)*\""
  "A JSON string, as illume prints the quote and the replacement.")

(defvar-local illume--review-current nil
  "In an `illume-review-mode' buffer: where the suggestion last visited is.")

;;;###autoload
(defun illume-review (instruction)
  "Ask illume for suggestions on the buffer by INSTRUCTION, and list them.
The whole buffer goes to `illume --review' (see `illume-review-profile').
Each suggestion names the exact text it would change, found in the
buffer, and its replacement; illume drops those whose text is not
there.  They are listed in the buffer *illume-review*, one a line
as compilers print them (FILE:LINE:COL: \"QUOTE\" -> \"REPLACEMENT\":
MESSAGE); there \\<illume-review-mode-map>\\[illume-review-goto] shows one in the buffer,
\\[illume-review-apply] applies it, and \\[next-error] and \\[previous-error] go from one
to the next in the buffer.
`illume-review-apply' puts the replacement in place of the quote,
one undo step, only where the quote still is."
  (interactive (list (read-string "Review instruction (RET for none): ")))
  (illume--stop-and-wait (current-buffer))
  (let ((name (or buffer-file-name (buffer-name)))
        (profile (or illume-review-profile (if (derived-mode-p 'prog-mode) "review-code" "review"))))
    (illume--start 'review (illume--buffer-text) (point-max) "" nil
                   (illume--argv nil (append (list "--review" "--file-name" name) (illume--job-profile profile))
                                 ;; An instruction that starts with `-' is no option for illume.
                                 (append (and (not (string= instruction ""))
                                              (list (if (string-prefix-p "-" instruction)
                                                        (concat " " instruction)
                                                      instruction)))
                                         '("--")))
                   (lambda (reply status) (illume--review-done reply status name)))
    (message "illume: reviewing %s" name)))

(defun illume--review-done (reply status name)
  "List the suggestions of REPLY, the review of the current buffer as NAME.
STATUS is illume's exit status."
  (cond
   ((illume--reply-stopped reply) (message "illume: the review was stopped"))
   ((/= status 0) (message "illume: the review failed: %s" (illume--last-words reply status)))
   (t
    (let ((source (current-buffer))
          (output (get-buffer-create "*illume-review*"))
          (count 0))
      (with-current-buffer output
        (let ((inhibit-read-only t))
          (erase-buffer)
          (illume-review-mode)
          (dolist (line (split-string (illume--reply-out reply) "\n" t))
            (let ((suggestion (illume--review-parse source name line)))
              (when suggestion
                (setq count (1+ count))
                (insert (propertize line 'illume-suggestion suggestion 'mouse-face 'highlight) "\n"))))
          (goto-char (point-min))))
      (setq next-error-last-buffer output)
      (display-buffer output)
      (let ((said (string-trim (illume--reply-err reply))))
        (message "illume: %d suggestion%s in *illume-review*%s" count (if (= count 1) "" "s")
                 (if (string= said "") "" (concat "; " said))))))))

(defun illume--review-parse (source name line)
  "Return the suggestion of LINE, printed for SOURCE as NAME, or nil.
A suggestion is a plist: :marker where its quote starts in SOURCE,
:quote, :replacement, :applied."
  (let ((rest (and (string-prefix-p (concat name ":") line) (substring line (1+ (length name))))))
    (when (and rest
               (string-match (concat "\\`\\([0-9]+\\):\\([0-9]+\\): \\(" illume--json-string "\\) -> \\("
                                     illume--json-string "\\)\\(?:: .*\\)?\\'")
                             rest))
      (let ((line-number (string-to-number (match-string 1 rest)))
            (column (string-to-number (match-string 2 rest)))
            (quoted (ignore-errors (illume--json-read (match-string 3 rest))))
            (replacement (ignore-errors (illume--json-read (match-string 4 rest)))))
      (when (and (stringp quoted) (stringp replacement) (not (string= quoted "")))
        (with-current-buffer source
          (save-restriction
            (widen)
            (save-excursion
              (goto-char (point-min))
              (forward-line (1- line-number))
              ;; COL counts characters, as Emacs does.
              (forward-char (min (1- column) (- (line-end-position) (point))))
              (list :marker (copy-marker (point)) :quote quoted :replacement replacement :applied nil)))))))))

(defun illume--json-read (text)
  "Return the string in TEXT, a JSON string."
  (if (fboundp 'json-parse-string)
      (json-parse-string text)
    (require 'json)
    (with-no-warnings (json-read-from-string text))))

(defvar illume-review-mode-map
  (let ((map (make-sparse-keymap)))
    (define-key map (kbd "RET") #'illume-review-goto)
    (define-key map "a" #'illume-review-apply)
    (define-key map "n" #'next-error-no-select)
    (define-key map "p" #'previous-error-no-select)
    (define-key map [mouse-2] #'illume-review-goto)
    map)
  "Keymap of `illume-review-mode'.")

(define-derived-mode illume-review-mode special-mode "illume-review"
  "The suggestions of `illume-review', one a line.
\\{illume-review-mode-map}"
  (setq-local next-error-function #'illume--review-next-error)
  (setq truncate-lines t))

(defun illume--review-next-error (&optional n reset)
  "Show a suggestion in its buffer, for `next-error': N after the current one.
With RESET, count N from the first."
  (let ((n (or n 1)))
    (when reset
      (goto-char (point-min))
      (setq illume--review-current nil)
      (setq n (max 0 (1- n))))
    (when illume--review-current
      (goto-char illume--review-current))
    (unless (or reset illume--review-current (< n 1))
      (setq n (1- n)))
    (let ((line (forward-line n)))
      (unless (and (= line 0) (get-text-property (point) 'illume-suggestion))
        (user-error "No more suggestions")))
    (illume-review-goto)))

(defun illume--review-at-point ()
  "Return the suggestion on the line at point, or signal an error."
  (or (get-text-property (line-beginning-position) 'illume-suggestion)
      (user-error "No suggestion on this line")))

(defun illume-review-goto ()
  "Show the suggestion on this line where its quote is in the buffer reviewed."
  (interactive)
  (let* ((suggestion (illume--review-at-point))
         (marker (plist-get suggestion :marker)))
    (setq illume--review-current (line-beginning-position))
    (unless (marker-buffer marker)
      (user-error "Its buffer is gone"))
    (pop-to-buffer (marker-buffer marker))
    (goto-char marker)))

(defun illume-review-apply ()
  "Put the replacement of a suggestion of `illume-review' in place of its quote.
In *illume-review*, the suggestion on this line; elsewhere, the one
last shown with \\[next-error] or \\[illume-review-goto].  Only where the quote
still is: at its place, else its occurrence on the same line
nearest to it (a change before it on the line moved it).  The
replacement goes in as text, one undo step."
  (interactive)
  (let* ((here (derived-mode-p 'illume-review-mode))
         (review (if here (current-buffer) (get-buffer "*illume-review*")))
         (suggestion (and review (with-current-buffer review
                                   (save-excursion
                                     (unless here
                                       (goto-char (or illume--review-current
                                                      (user-error "Show a suggestion with M-g n first"))))
                                     (illume--review-at-point))))))
    (unless suggestion
      (user-error "No review: M-x illume-review first"))
    (when (plist-get suggestion :applied)
      (user-error "That suggestion is applied already"))
    (let* ((marker (plist-get suggestion :marker))
           (quoted (plist-get suggestion :quote))
           (buffer (or (marker-buffer marker) (user-error "Its buffer is gone"))))
      (with-current-buffer buffer
        (barf-if-buffer-read-only)
        (save-restriction
          (widen)
          (let ((at (illume--review-find marker quoted)))
            (unless at
              (user-error "The text changed: %s is no longer there" (prin1-to-string quoted)))
            (save-excursion
              (goto-char at)
              (delete-region at (+ at (length quoted)))
              (insert (plist-get suggestion :replacement))))))
      (plist-put suggestion :applied t)
      (with-current-buffer review
        (let ((inhibit-read-only t))
          (save-excursion
            (goto-char (point-min))
            (while (and (not (eq (get-text-property (point) 'illume-suggestion) suggestion))
                        (= (forward-line 1) 0)))
            (unless (eobp)
              (put-text-property (line-beginning-position) (line-end-position) 'face 'shadow)))))
      (message "illume: applied"))))

(defun illume--review-find (marker quoted)
  "Return the start of QUOTED: at MARKER, else nearest to it on its line, or nil."
  (let ((at (marker-position marker)))
    (if (equal (buffer-substring-no-properties at (min (point-max) (+ at (length quoted)))) quoted)
        at
      (save-excursion
        (goto-char at)
        (let ((bol (line-beginning-position))
              (eol (line-end-position))
              best)
          (goto-char bol)
          (while (and (search-forward quoted nil t) (<= (match-beginning 0) eol))
            (let ((found (match-beginning 0)))
              (when (or (not best) (< (abs (- found at)) (abs (- best at))))
                (setq best found))
              (goto-char (1+ found))))
          best)))))

;;; The mode line

(defun illume--show-running ()
  "Show `illume-mode-line-indicator' in the mode line of buffers with a reply."
  (unless (assq 'illume--current mode-line-misc-info)
    (push '(illume--current illume-mode-line-indicator) mode-line-misc-info))
  (force-mode-line-update))

(provide 'illume)
;;; illume.el ends here

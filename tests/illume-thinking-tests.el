;;; illume-thinking-tests.el --- ERT tests of thinking in emacs/illume.el -*- lexical-binding: t; -*-

;;; Commentary:

;; Run by tests/test_thinking_editors.py, as tests/illume-tests.el is
;; (whose helpers these use), against a scripted server that streams
;; thinking in `reasoning_content', holds the answer back a while, then
;; sends it.

;;; Code:

(require 'illume-tests)

(ert-deftest illume-thinking-test-the-think-block-streams-and-the-next-turn-leaves-it-out ()
  (let ((text (illume-test-chat "thinking")))
    (illume-test-with-buffer text
      (illume)
      ;; The thinking shows while the reply still streams: the answer is held back.
      (illume-test-wait-until (lambda () (string-match-p "^Let me think\\.$" (buffer-string))))
      (should (illume-running-p))
      (should-not (string-match-p "Hello!" (buffer-string)))
      (illume-test-wait)
      (should (equal (buffer-string)
                     (illume-test-after text (concat "\n\n!assistant\n\n!exclude think\n<think>\n"
                                                     "Let me think.\n</think>\n\nHello!"))))
      ;; The next turn: test_thinking_editors.py checks what it sent.
      (goto-char (point-max))
      (insert "\n!user\nMore\n")
      (illume)
      (illume-test-wait))))

(provide 'illume-thinking-tests)
;;; illume-thinking-tests.el ends here

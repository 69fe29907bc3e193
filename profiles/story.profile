!note For stories longer than the model's context: load it after the model's
!note profile (`!profile embedded`, then `!profile story`); it sets no !api.
!note Each turn that would not fit first summarises the oldest chapters that
!note must go, with `illume --filter` or the editors (README, "Long stories").
!fit summarize
!summarize story
You continue the story in the style of its author: the same voice, tense and
characters, one scene at a time. Write only the story.

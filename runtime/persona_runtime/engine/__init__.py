"""The model-call engine shared by chat turns (ConversationLoop) and agent steps (AgenticLoop).

* :mod:`.usage`: ``Usage``, tokens and cost that add up with ``+``.
* :mod:`.messages`: conversation-message builders, tool-call parsing and result formatting.
* :mod:`.stream`: a cancellable stream pump and ``cancellable`` awaits (``Cancelled``).
* :mod:`.reply`: one streamed request gathered into a ``ModelReply`` (text, reasoning, tool
  calls, usage, whether the reply cap cut it).
* :mod:`.engine`: ``ModelEngine``: reply budgets (the local GGUF cap), the fallback walk, one
  model attempt, and history summaries.
* :mod:`.account`: ``CallAccount``, what one turn or step spent and tried, and the one place a
  ``TurnLog`` record is built from it.
"""

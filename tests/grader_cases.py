"""Per-chapter grading cases (written from the rubrics, labels set before running the grader).

For every chapter: a correct paraphrase that shares few words with the reference, a partial answer, an
answer holding a misconception, and an answer that negates a key point.
"""

CASES: list[tuple[str, str, str, str]] = [
    # (question id, kind, expected verdict, answer)
    (
        "ch11-1",
        "paraphrase",
        "correct",
        "Compute-optimal training means growing the network and the dataset together: roughly twenty tokens "
        "for each weight. GPT-3 and Gopher were way too big for the few hundred billion tokens they saw, "
        "which is why the smaller 70B Chinchilla trained on 1.4T tokens beat Gopher.",
    ),
    (
        "ch11-1",
        "partial",
        "partial",
        "The paper found that big models like GPT-3 had not seen enough data for their size.",
    ),
    (
        "ch11-1",
        "misconception",
        "incorrect",
        "Chinchilla showed that the best use of extra compute is to make the model as big as you can; "
        "data matters much less than parameter count.",
    ),
    (
        "ch11-1",
        "negation",
        "incorrect",
        "Chinchilla says you should not scale data together with parameters; put the extra compute into size.",
    ),
    (
        "ch12-3",
        "paraphrase",
        "correct",
        "Because stage k can't start until stage k-1 hands it activations, the devices idle while the pipe "
        "fills and empties - that idle time is the bubble, about (p-1)/(m+p-1) of the step. Chopping the "
        "batch into many more micro-batches than stages, or interleaved schedules, makes it small.",
    ),
    (
        "ch12-3",
        "partial",
        "partial",
        "GPUs spend time waiting for each other at the start and end of each batch.",
    ),
    (
        "ch12-3",
        "misconception",
        "incorrect",
        "The real cost of pipeline parallelism is the all-reduce of gradients between stages, which floods "
        "the interconnect.",
    ),
    (
        "ch12-3",
        "negation",
        "incorrect",
        "Adding more micro-batches makes the idle bubble larger, so you should use as few as possible.",
    ),
    (
        "ch13-1",
        "paraphrase",
        "correct",
        "Brain float spends 8 bits on the exponent exactly like float32, so it can represent the same "
        "enormous range of magnitudes. Tiny gradient values survive instead of becoming zero, so you don't "
        "need a loss scaler; losing mantissa precision hurts SGD much less than running out of range.",
    ),
    ("ch13-1", "partial", "partial", "bf16 can represent a much bigger range of numbers than fp16."),
    (
        "ch13-1",
        "misconception",
        "incorrect",
        "bf16 is safer because it is more precise than fp16, it keeps more significant digits.",
    ),
    (
        "ch13-1",
        "negation",
        "incorrect",
        "bf16 does not have the same exponent width as fp32, so its range is narrower than fp16's.",
    ),
    (
        "ch14-1",
        "paraphrase",
        "correct",
        "At every iteration it counts all neighbouring token pairs in the corpus and fuses the single most "
        "common pair into a new vocabulary entry. It is greedy because it only takes the locally best merge "
        "and never revisits earlier merges.",
    ),
    (
        "ch14-1",
        "partial",
        "partial",
        "It keeps adding merged symbols to the vocabulary until it reaches the size you asked for.",
    ),
    (
        "ch14-1",
        "misconception",
        "incorrect",
        "BPE picks the merge that maximises the likelihood of the training data under a unigram language model.",
    ),
    (
        "ch14-1",
        "negation",
        "incorrect",
        "BPE merges the least frequent pair of adjacent symbols at each step so rare words get tokens.",
    ),
    (
        "ch15-4",
        "paraphrase",
        "correct",
        "Most likely the step size was far too aggressive for full fine-tuning on so little data: the model "
        "memorised the 2k examples and wiped out a lot of its pretrained general ability. Use a much smaller "
        "LR, fewer epochs with early stopping on a validation split, or switch to LoRA.",
    ),
    ("ch15-4", "partial", "partial", "It probably overfit to the small training set."),
    (
        "ch15-4",
        "misconception",
        "incorrect",
        "2000 examples are just not enough data, you would need hundreds of thousands to see any benefit.",
    ),
    (
        "ch15-4",
        "negation",
        "incorrect",
        "The learning rate was too low, so the weights barely moved away from the base model.",
    ),
    (
        "ch16-1",
        "paraphrase",
        "correct",
        "We only backpropagate on the assistant's reply because that's the behaviour we want; the user's "
        "text is always given at inference, so learning to predict it is pointless and would dilute the "
        "gradient, especially with long prompts.",
    ),
    ("ch16-1", "partial", "partial", "Because otherwise long prompts would dominate the loss."),
    (
        "ch16-1",
        "misconception",
        "incorrect",
        "Masking the prompt hides it from the model, so it can't attend to the instruction while training.",
    ),
    (
        "ch16-1",
        "negation",
        "incorrect",
        "The loss should not be restricted to the response; the model needs to learn to predict the user's prompts too.",
    ),
    (
        "ch17-3",
        "paraphrase",
        "correct",
        "You need the actor being optimised, a frozen SFT copy to compute the KL term, the reward network that "
        "scores the samples, and a critic that estimates values so PPO can compute advantages.",
    ),
    (
        "ch17-3",
        "partial",
        "partial",
        "There's the policy you are training and the reward model that scores its outputs.",
    ),
    (
        "ch17-3",
        "misconception",
        "incorrect",
        "They are four replicas of one model spread over GPUs for data parallelism.",
    ),
    (
        "ch17-3",
        "negation",
        "incorrect",
        "The reference model is not kept frozen; it is updated together with the policy, and there is no value model.",
    ),
    (
        "ch18-2",
        "paraphrase",
        "correct",
        "Scaling the logits down by T>1 before the softmax flattens the teacher's output, so the tiny "
        "probabilities on the wrong classes grow enough to carry information; at T=1 a confident teacher is "
        "almost one-hot, basically a hard label.",
    ),
    (
        "ch18-2",
        "partial",
        "partial",
        "At temperature 1 the teacher is usually so confident that its output is basically one-hot.",
    ),
    (
        "ch18-2",
        "misconception",
        "incorrect",
        "The temperature injects random noise into the teacher outputs as a regulariser for the student.",
    ),
    (
        "ch18-2",
        "negation",
        "incorrect",
        "A higher temperature sharpens the teacher's distribution so the student copies the top class more confidently.",
    ),
    (
        "ch19-3",
        "paraphrase",
        "correct",
        "Every generation only sees a finite sample of what the last model produced, so rare events in the "
        "tails get lost, and each model adds its own fitting errors. These compound generation after "
        "generation, the distribution narrows and drifts away from real data.",
    ),
    ("ch19-3", "partial", "partial", "Errors pile up from one generation of models to the next."),
    (
        "ch19-3",
        "misconception",
        "incorrect",
        "Training on generated text makes the distribution broader, because models keep inventing weird new content.",
    ),
    (
        "ch19-3",
        "negation",
        "incorrect",
        "The rare tail events do not disappear; each generation keeps the full diversity of the real data.",
    ),
    (
        "ch20-1",
        "paraphrase",
        "correct",
        "If the test items leaked into the pretraining or fine-tuning corpus, the model may simply remember "
        "the answers rather than work them out, which inflates the score. Leakage can only help, so the "
        "published number is a ceiling on real ability.",
    ),
    ("ch20-1", "partial", "partial", "It means test questions ended up in the training data."),
    (
        "ch20-1",
        "misconception",
        "incorrect",
        "Contamination means the benchmark itself has wrong or noisy answer labels.",
    ),
    (
        "ch20-1",
        "negation",
        "incorrect",
        "Contamination makes benchmark scores lower than the model's real ability, so they are lower bounds.",
    ),
]

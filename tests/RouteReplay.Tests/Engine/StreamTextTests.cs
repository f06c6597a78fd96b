using RouteReplay.Engine;
using RouteReplay.Tests.Support;

namespace RouteReplay.Tests.Engine;

/// <summary>
/// The text a request streams, with the model's output scripted: every delta is whole Unicode text whatever the stop
/// strings hold back, and the deltas add up to the final text, also when the request is aborted.
/// </summary>
public sealed class StreamTextTests(TinyModelFixture model) : IClassFixture<TinyModelFixture>
{
    private const string Script = "Emoji 😀🚀 side by side, 👍 then text, and 🎉 at the end 🎉";

    private (LlmEngine Engine, IReadOnlyList<int> Prompt, IReadOnlyList<int> Script) Scripted()
    {
        var prompt = model.Tokenizer.Encode("Say something");
        var script = model.Tokenizer.Encode(Script);
        var engine = WrappedEngine.Load(model.Directory, new EngineOptions { NumBlocks = 32 }, inner => new ScriptedBackend(inner, prompt.Count, script));
        return (engine, prompt, script);
    }

    [Fact]
    public void No_delta_ends_inside_a_surrogate_pair_whatever_the_stop_strings_hold_back()
    {
        var (engine, prompt, script) = Scripted();
        using (engine)
        {
            foreach (var holdBack in new[] { 1, 2, 3, 5, 8 })
            {
                var runner = new EngineRunner();
                var id = $"hold-{holdBack}";
                engine.AddRequest(new EngineRequest
                {
                    RequestId = id,
                    PromptTokenIds = prompt,
                    Sampling = new SamplingParams { Temperature = 0, MaxTokens = script.Count, Stop = [new string('#', holdBack + 1)] },
                }, runner);
                engine.RunToCompletion();
                var deltas = runner.Deltas[id].Select(d => d.Text).ToList();
                Assert.All(deltas, d => Assert.False(d.Length > 0 && (char.IsLowSurrogate(d[0]) || char.IsHighSurrogate(d[^1])), $"hold-back {holdBack}: a delta splits a surrogate pair"));
                Assert.Equal(Script, string.Concat(deltas));
                Assert.Equal(Script, runner.Results[id].Choices[0].Text);
            }
        }
    }

    [Fact]
    public void An_aborted_request_streams_the_text_it_held_back_so_the_deltas_add_up_to_its_text()
    {
        var (engine, prompt, script) = Scripted();
        using (engine)
        {
            var runner = new EngineRunner();
            engine.AddRequest(new EngineRequest
            {
                RequestId = "held",
                PromptTokenIds = prompt,
                Sampling = new SamplingParams { Temperature = 0, MaxTokens = script.Count, Stop = ["a stop string that never comes"] },
            }, runner);
            while (engine.Stats.GeneratedTokens < 6)
            {
                engine.Step();
            }
            Assert.True(engine.Abort("held"));
            var text = runner.Results["held"].Choices[0].Text;
            Assert.Equal(model.Tokenizer.Decode(runner.Results["held"].Choices[0].TokenIds.ToArray()), text);
            Assert.Equal(text, string.Concat(runner.Deltas["held"].Select(d => d.Text)));
        }
    }
}

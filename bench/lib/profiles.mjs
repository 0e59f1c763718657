// Content profiles of scenarios 1 and 2 (issue 16, step 1): how long the messages of the seeded
// dialogs are. Each profile gets its own reader (one vision with the history of scenario 1) and
// its own lister (50 visions for scenario 2), so one run measures the same two screens on short,
// mixed and long messages; ours and PostGraphile read the same rows.
//
//   short  every message 55–130 characters of Russian text (~100–240 bytes)
//   mix    the person 100–400 characters, the coach 800–3,000 characters, in paragraphs
//   long   every message 2,150–2,350 characters, in paragraphs (~4 KB)
//   ascii  the content of rounds 1–2: ~200 bytes of ASCII, the same sentence in every message
//          (bench/lib/db.mjs `seedMessages`); not in the default set, kept for comparison with
//          the numbers measured before the profiles existed
//
// The text is Russian (the product is Russian-first): every character but spaces, digits and
// punctuation takes two bytes in UTF-8, and a string with them is a two-byte string in V8, so
// the servers decode, copy and escape more than the ASCII text of rounds 1–2 made them. Words are
// drawn from the tokens of a coach's dialog (below), so common words come up as often as in it;
// sentences of 4–13 words end in `.`, `?` or `!`, a few have a comma, and the longer messages
// (the coach in `mix`, every message in `long`) are split into paragraphs by blank lines (`\n\n`,
// escaped in every JSON answer). Word sequences are random: a message never repeats a block of
// itself, so PostgreSQL's TOAST compression (messages over ~2 KB) sees ordinary text, not a loop.
//
// Deterministic: the text of message i of a vision depends only on the profile, the vision's seed
// and i (bench/lib/shared.mjs `rng`); ids are the database's (gen_random_uuid), timestamps 10 ms
// apart ending a day ago, as in `seedMessages`.
import { seedMessages } from './db.mjs';
import { rng } from './shared.mjs';

/** Lengths in characters; `bytes` is the range the average bytes per message must fall in (checked after seeding). */
export const PROFILES = {
  short: {
    description: 'every message 55–130 characters of Russian text (~100–240 bytes)',
    user: { chars: [55, 130], paragraphs: false },
    assistant: { chars: [55, 130], paragraphs: false },
    bytes: [100, 250],
  },
  mix: {
    description: 'person 100–400 characters, coach 800–3,000 characters (paragraphs), Russian text',
    user: { chars: [100, 400], paragraphs: false },
    assistant: { chars: [800, 3000], paragraphs: true },
    bytes: [1000, 3500],
  },
  long: {
    description: 'every message 2,150–2,350 characters of Russian text in paragraphs (~4 KB)',
    user: { chars: [2150, 2350], paragraphs: true },
    assistant: { chars: [2150, 2350], paragraphs: true },
    bytes: [3600, 4600],
  },
  ascii: {
    description: 'rounds 1–2: "Message <i>: " + the same English sentence, ~200 bytes of ASCII',
    legacy: true,
    bytes: [190, 210],
  },
};

/** The profiles a run measures when `--profiles` is not given (quick: one). */
export const DEFAULT_PROFILES = ['short', 'mix', 'long'];
export const QUICK_PROFILES = ['mix'];

// A coach's dialog in Russian: only the source of the words (and of their frequencies).
const SOURCE = `
Сегодня утром я всё-таки вышел на пробежку, хотя очень не хотелось вставать. Пробежал пять
километров в спокойном темпе и почувствовал, что день начался правильно. Это настоящий шаг
вперёд, и он важнее любой дистанции. Регулярность растёт из маленьких тренировок, которые
получается сохранить даже в трудную неделю. Давай посмотрим на неделю вперёд и найдём два окна,
которые сложно потерять. На работе снова аврал, вечером сил хватает только на прогулку с собакой.
Прогулка тоже считается: ты двигаешься, дышишь и даёшь голове отдохнуть от задач. После длинной
пробежки немного болит колено, и я не понимаю, нужно ли терпеть. Боль в колене после длинной
пробежки — сигнал прислушаться, а не терпеть. Если боль острая или держится больше двух дней,
покажись врачу перед следующей длинной тренировкой. Я записался на полумарафон в апреле, и мне
немного страшно, что не успею подготовиться. До апреля четырнадцать недель, этого хватит, чтобы
спокойно подготовиться, если каждая четвёртая неделя будет легче остальных. Сон тоже часть
тренировки: после коротких ночей бегай легко и пропускай интервалы. Запиши одну вещь, которая
сегодня получилась, чтобы найти её в трудный день. Я опять сравниваю себя с другом, который
бегает гораздо быстрее меня. Сравнение с другом измеряет его путь, а не твой. Твой дневник —
лучшее зеркало: три месяца назад двадцать минут казались тебе долгими. Что сделало бы следующую
тренировку чуть проще для старта? Может быть, собрать форму с вечера и положить кроссовки у
двери. Высокий пульс на лёгком беге обычно значит, что темп пока выше, чем нужно, поэтому
замедлись и дыши носом. Дети заболели, и вся неделя выпала, я чувствую, что всё потерял. Неделя
без бега ничего не ломает: начни с двух спокойных выходов и посмотри, как отзывается тело. Цель
выбежать десятку из пятидесяти минут реальна, если держать три тренировки в неделю до осени.
Вес стоит на месте третью неделю, и это расстраивает меня больше, чем я ожидал. Вес колеблется от
недели к неделе, поэтому смотри на тренд за месяц, а не на одну цифру утром. Как ты сейчас
оцениваешь свою энергию по шкале от одного до десяти? Что поддерживает тебя, когда мотивация
пропадает, и кто рядом может напомнить о цели? Мы можем разбить большую цель на маленькие шаги и
отмечать каждый из них, чтобы видеть движение. Хорошо, давай попробуем составить план на месяц и
проверим его в конце каждой недели вместе.
`;
const WORDS = SOURCE.toLowerCase().match(/[а-яё0-9]+(?:-[а-яё]+)?/g);

/** One sentence: 4–13 words drawn from the source, capitalised, sometimes a comma, `.` `?` or `!`. */
function sentence(r) {
  const n = 4 + Math.floor(r() * 10);
  const words = [];
  for (let i = 0; i < n; i++) words.push(WORDS[Math.floor(r() * WORDS.length)]);
  if (n > 6 && r() < 0.4) words[2 + Math.floor(r() * (n - 4))] += ',';
  const end = r();
  const text = words.join(' ');
  return `${text[0].toUpperCase()}${text.slice(1)}${end < 0.8 ? '.' : end < 0.92 ? '?' : '!'}`;
}

/**
 * A message of `min`–`max` characters (uniform): sentences until the length is reached, cut at
 * the last word boundary before it (the cut sentence ends with `…`); with `paragraphs`, a blank
 * line after every 3–5 sentences.
 */
function messageText(r, { chars: [min, max], paragraphs }) {
  const target = min + Math.floor(r() * (max - min + 1));
  let out = '';
  let inParagraph = 0;
  let paragraphLength = 3 + Math.floor(r() * 3);
  while (out.length < target) {
    const s = sentence(r);
    if (out === '') out = s;
    else if (paragraphs && inParagraph >= paragraphLength) {
      out += `\n\n${s}`;
      inParagraph = 0;
      paragraphLength = 3 + Math.floor(r() * 3);
    } else out += ` ${s}`;
    inParagraph++;
  }
  if (out.length > target) {
    out = out.slice(0, target - 1);
    const cut = Math.max(out.lastIndexOf(' '), out.lastIndexOf('\n'));
    if (cut >= min - 1) out = out.slice(0, cut);
    out = `${out.replace(/[\s,.?!]+$/, '')}…`;
  }
  return out;
}

/** The contents of the `n` messages of a vision, oldest first; odd positions (1, 3, …) are the person's. */
export function profileTexts(profile, seed, n) {
  const p = PROFILES[profile];
  const r = rng(seed);
  const out = [];
  for (let i = 1; i <= n; i++) out.push(messageText(r, i % 2 === 1 ? p.user : p.assistant));
  return out;
}

/**
 * Inserts `n` messages of the profile into a vision (one statement: the texts as a parameter
 * array, `unnest … with ordinality`): alternating person/assistant, COMPLETE, 10 ms apart, the
 * newest a day ago; the same shape as `seedMessages`, with the profile's texts.
 */
export async function seedProfileMessages(pool, visionId, profile, n, seed) {
  if (n <= 0) return;
  if (PROFILES[profile].legacy) return seedMessages(pool, visionId, n);
  await pool.query(
    `insert into vision_messages (id, visionid, sender, messagetype, content, state, createdat)
     select gen_random_uuid(), $1, case when t.i % 2 = 1 then 'user' else 'assistant' end, 'text', t.content, 'complete',
            now() - interval '1 day' - ($2 - t.i) * interval '10 milliseconds'
     from unnest($3::text[]) with ordinality as t(content, i)`,
    [visionId, n, profileTexts(profile, seed, n)],
  );
}

/**
 * What was seeded for the users of a profile, by sender: messages, characters and bytes per
 * message (min / average / max) and the bytes PostgreSQL stores per content (`pg_column_size`:
 * compressed by TOAST when a value is over ~2 KB and compresses). Throws when the average bytes
 * per message fall outside the profile's range: the generator must produce what the name says.
 */
export async function describeProfile(pool, profile, userIds) {
  const { rows } = await pool.query(
    `select m.sender, count(*)::int as messages,
            min(char_length(m.content))::int as min_chars, round(avg(char_length(m.content)))::int as avg_chars, max(char_length(m.content))::int as max_chars,
            min(octet_length(m.content))::int as min_bytes, round(avg(octet_length(m.content)))::int as avg_bytes, max(octet_length(m.content))::int as max_bytes,
            round(avg(pg_column_size(m.content)))::int as avg_stored_bytes
     from vision_messages m join visions v on v.id = m.visionid
     where v.userid = any($1::text[])
     group by m.sender order by m.sender desc`,
    [userIds],
  );
  const all = await pool.query(
    `select round(avg(octet_length(m.content)))::int as avg_bytes from vision_messages m join visions v on v.id = m.visionid where v.userid = any($1::text[])`,
    [userIds],
  );
  const avgBytes = all.rows[0].avg_bytes;
  const [lo, hi] = PROFILES[profile].bytes;
  if (!(avgBytes >= lo && avgBytes <= hi)) throw new Error(`profile ${profile}: ${avgBytes} bytes per message on average, expected ${lo}–${hi}`);
  const bySender = Object.fromEntries(rows.map(({ sender, ...rest }) => [sender, rest]));
  return { description: PROFILES[profile].description, avgBytes, bySender };
}
